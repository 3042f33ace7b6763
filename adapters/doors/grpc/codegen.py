"""Generate the Python gRPC code from proto/ (one command), or check that the committed code is fresh.

    python -m adapters.doors.grpc.codegen          # write adapters/doors/grpc/gen/
    python -m adapters.doors.grpc.codegen --check  # exit 1 if adapters/doors/grpc/gen/ differs from a fresh build
"""

from __future__ import annotations

import filecmp
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.rpc import status_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "proto"
GEN = Path(__file__).resolve().parent / "gen"
PACKAGE = "adapters.doors.grpc.gen"


def vendored_is_upstream() -> bool:
    """proto/google/ holds copies of googleapis files (for buf and non-Python clients); at run time Python
    imports googleapis-common-protos' own code for them, so the copies must be the files it was built from."""
    upstream = Path(status_pb2.__file__).parent
    return all((upstream / p.relative_to(PROTO / "google/rpc")).read_bytes() == p.read_bytes()
               for p in (PROTO / "google/rpc").rglob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    include = str(resources.files("grpc_tools") / "_proto")
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto")
                   if p.relative_to(PROTO).parts[0] != "google")  # googleapis-common-protos has them
    code = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
                        f"--grpc_python_out={out}", *files])
    if code != 0:
        raise SystemExit(f"protoc failed ({code})")
    for path in out.rglob("*.py*"):
        text = path.read_text()
        # protoc writes absolute imports of the proto package; make them relative to ours
        text = re.sub(r"^from baton\.v1 import", f"from {PACKAGE}.baton.v1 import", text, flags=re.M)
        path.write_text(text)
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def same(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files:
        return False
    return all(same(a / d, b / d) for d in cmp.common_dirs)


def main() -> None:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            if not GEN.exists() or not same(Path(tmp), GEN):
                print("adapters/doors/grpc/gen is stale: run python -m adapters.doors.grpc.codegen", file=sys.stderr)
                raise SystemExit(1)
        if not vendored_is_upstream():
            print("proto/google/rpc differs from googleapis-common-protos' copy: copy it from there",
                  file=sys.stderr)
            raise SystemExit(1)
        print("generated gRPC code is fresh")
        return
    if GEN.exists():
        shutil.rmtree(GEN)
    generate(GEN)
    print(f"wrote {GEN.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
