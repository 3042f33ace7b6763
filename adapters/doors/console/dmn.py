"""DMN in the console: a model uploaded on the Rulesets page lands in the editor as the imported YAML with
its conversion notes (nothing is stored until it is submitted like any edit); a ruleset version's tables,
input facts and decisions download as DMN 1.5. The conversion is engine/dmn's, as `baton dmn` uses it."""

from __future__ import annotations

import asyncio
import re

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.doors.console.rulesets import RulesetPages
from adapters.doors.console.ui import UI
from engine.dmn.export import NotExportable, export_dmn
from engine.dmn.importer import import_dmn
from engine.dmn.model import DmnError
from engine.errors import BatonError

_NAME = re.compile(r"^ruleset:\s*([a-z0-9][a-z0-9_.-]*)\s*$", re.M)


class DmnPages:
    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self.c = ui.c
        self.rulesets = RulesetPages(ui)  # the editor's own validation

    async def upload(self, request: Request) -> Response:
        session = self.ui.need(request, "editor")
        if request.method == "GET":
            return self.ui.page(request, "dmn_upload.html")
        data = await self.ui.form(request, session)
        model = data.get("model")
        if not isinstance(model, UploadFile) or not model.filename:
            return self.ui.page(request, "dmn_upload.html", status=400, error="choose a .dmn file to import")
        raw = await model.read()
        try:
            text = raw.decode("utf-8-sig")
            imported = await asyncio.to_thread(import_dmn, text)
        except UnicodeDecodeError:
            return self.ui.page(request, "dmn_upload.html", status=400, error=f"{model.filename}: not UTF-8 text")
        except DmnError as e:
            construct = f" [{e.construct}]" if e.construct else ""
            return self.ui.page(request, "dmn_upload.html", status=400, error=f"{model.filename}: {e}{construct}")
        found = _NAME.search(imported.yaml)
        name = found.group(1) if found else "imported"
        check = await self.rulesets.validate(imported.yaml)
        notes = [f"imported from {model.filename}", *imported.notes]
        return self.ui.page(request, "editor.html", name=name, source=imported.yaml, check=check, notes=notes)

    async def download(self, request: Request) -> Response:
        self.ui.need(request, "editor", "auditor", "approver")
        try:
            version = await asyncio.to_thread(self.c.registry.resolve, request.path_params["version"])
            name, source, trusted = await self.rulesets.stored(version)
            if trusted:
                rs = (await asyncio.to_thread(self.c.registry.engine_for, version)).ruleset
                exported = await asyncio.to_thread(export_dmn, rs)
            else:  # never published: exported by the bounded child that compiles it, not here
                _, found = await self.c.candidates.ajob("dmn", source, f"{name}@{version[:12]}")
                if "error" in found:
                    raise NotExportable(found["error"])
                exported = found["xml"], found["left_out"]
            xml, left_out = exported
        except BatonError as e:
            return self.ui.page(request, "error.html", status=404, message=e.message)
        except NotExportable as e:
            return self.ui.page(request, "error.html", status=400, message=f"no DMN export: {e}")
        if left_out:  # what DMN cannot hold (model and tool calls, escalations, effects) is named, not dropped
            listed = "\n".join(f"  - {x}" for x in left_out).replace("--", "- -")
            declaration, end, rest = xml.partition("?>")
            note = f"\n<!-- Not exported from {name}@{version[:12]} (DMN cannot hold it):\n{listed}\n-->"
            xml = f"{declaration}{end}{note}{rest}" if end else f"{note.lstrip()}\n{xml}"
        headers = {"content-disposition": f'attachment; filename="{name}-{version[:12]}.dmn"'}
        return Response(xml, media_type="application/xml", headers=headers)

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/rulesets/dmn", g(self.upload), methods=["GET", "POST"]),
            Route("/rulesets/v/{version}/dmn", g(self.download)),
        ]

