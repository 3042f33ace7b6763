"""Reading documents sent with a decision: PDF (pypdf), Markdown and plain text, with limits.

Everything wrong with a document is an :class:`InvalidInput` naming it (``documents[2]``): too large,
not a PDF it claims to be, encrypted, no text in it (a scan: OCR is not done here), not UTF-8, an
unsupported type. Nothing is stored for a request with a bad document.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from engine.documents import Document
from engine.errors import InvalidInput, Where

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_DOCUMENTS = 20
MAX_PAGES = 2000
TEXT_TYPES = {"text/plain", "text/markdown", "text/x-markdown"}
PDF = "application/pdf"
SUFFIXES = {".pdf": PDF, ".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain",
            ".text": "text/plain"}

logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every odd-but-readable file


@dataclass(frozen=True, slots=True)
class Incoming:
    """A document as read: the engine's view (text by page) and the original bytes to store."""

    document: Document
    content: bytes


def _bad(path: str, code: str, message: str) -> InvalidInput:
    return InvalidInput(code, f"{path}: {message}", Where(path=path))


def media_type_of(name: str, declared: str, content: bytes) -> str:
    declared = declared.split(";")[0].strip().lower()
    if declared:
        return declared
    if content.startswith(b"%PDF-"):
        return PDF
    for suffix, kind in SUFFIXES.items():
        if name.lower().endswith(suffix):
            return kind
    return "text/plain"


def read_document(name: str, content: bytes, media_type: str = "", path: str = "documents[0]",
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Incoming:
    name = (name or "document").strip()[:300] or "document"
    if len(content) > max_bytes:
        raise _bad(path, "document_too_large", f"{name} is {len(content):,} bytes; the limit is {max_bytes:,}")
    if not content:
        raise _bad(path, "empty_document", f"{name} is empty")
    kind = media_type_of(name, media_type, content)
    if kind == PDF:
        pages = _pdf_pages(name, content, path)
    elif kind in TEXT_TYPES or kind.startswith("text/"):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise _bad(path, "unreadable_document", f"{name} is not UTF-8 text (byte {e.start})") from None
        if "\x00" in text:
            raise _bad(path, "unreadable_document", f"{name} holds binary data, not text")
        pages = (text.replace("\r\n", "\n"),)
    else:
        raise _bad(path, "unsupported_document", f"{name}: {kind} is not supported (PDF, Markdown or plain text)")
    digest = hashlib.sha256(content).hexdigest()
    return Incoming(Document(digest, name, kind, pages), content)


def _pdf_pages(name: str, content: bytes, path: str) -> tuple[str, ...]:
    from pypdf import PdfReader

    if not content.startswith(b"%PDF-"):
        raise _bad(path, "unreadable_document", f"{name} is not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _bad(path, "unreadable_document", f"{name} is encrypted")
        if len(reader.pages) > MAX_PAGES:
            raise _bad(path, "document_too_large", f"{name} has {len(reader.pages)} pages; the limit is {MAX_PAGES}")
        pages = tuple(_clean(page.extract_text() or "") for page in reader.pages)
    except InvalidInput:
        raise
    except Exception as e:  # pypdf raises many kinds on a damaged file
        raise _bad(path, "unreadable_document", f"{name} is not a readable PDF ({type(e).__name__})") from None
    if not pages or not any(p.strip() for p in pages):
        raise _bad(path, "unreadable_document", f"{name} has no text layer (a scan? OCR is not supported)")
    return pages


def _clean(text: str) -> str:
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").replace("\r\n", "\n")
