"""Documents beside facts: their text by page, chunking for extraction, and where a value came from.

A document reaches the engine already read (the adapter extracts text from PDF, Markdown or plain
text and names it by the SHA-256 of its bytes). Each document is asserted as a built-in ``document``
fact; a model action with ``from_document: true`` reads the document its rule matched, chunk by
chunk, and the answers are merged into one fact whose fields each keep a pointer to the page and
offset they came from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.record import DocumentRef

PAGE_BREAK = "\n\n"


@dataclass(frozen=True, slots=True)
class Document:
    id: str  # sha-256 of the original bytes
    name: str
    media_type: str
    pages: tuple[str, ...]

    @staticmethod
    def from_text(name: str, text: str, media_type: str = "text/plain") -> Document:
        return Document(hashlib.sha256(text.encode("utf-8")).hexdigest(), name, media_type, (text,))

    @property
    def text(self) -> str:
        return PAGE_BREAK.join(self.pages)

    @property
    def chars(self) -> int:
        return sum(len(p) for p in self.pages) + len(PAGE_BREAK) * max(0, len(self.pages) - 1)

    def fact(self) -> DocumentRef:
        """The ``document`` fact (and the decision record's reference): never the text itself."""
        return {"id": self.id, "name": self.name, "media_type": self.media_type, "pages": len(self.pages),
                "chars": self.chars}

    def page_starts(self) -> list[int]:
        starts, at = [], 0
        for page in self.pages:
            starts.append(at)
            at += len(page) + len(PAGE_BREAK)
        return starts

    def position(self, offset: int) -> tuple[int, int]:
        """(page number from 1, offset within that page) of an offset into :attr:`text`."""
        starts = self.page_starts()
        page = max(i for i, s in enumerate(starts) if s <= offset) if starts else 0
        return page + 1, offset - (starts[page] if starts else 0)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int  # from 0
    count: int
    start: int  # offset into the document's text
    text: str
    page_from: int
    page_to: int

    def context(self) -> dict[str, object]:
        """What a prompt sees as ``chunk``."""
        return {"text": self.text, "index": self.index + 1, "count": self.count, "page_from": self.page_from,
                "page_to": self.page_to}


def chunks(doc: Document, size: int) -> list[Chunk]:
    """Cut the text into pieces of at most ``size`` characters, at a paragraph, line or word break when
    one is near the limit; deterministic, so the same document always gives the same calls."""
    text = doc.text
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text) or not spans:
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start:end]
            for sep in ("\n\n", "\n", " "):
                cut = window.rfind(sep)
                if cut > size // 2:
                    end = start + cut + len(sep)
                    break
        spans.append((start, end))
        if end >= len(text):
            break
        start = end
    out = []
    for i, (a, b) in enumerate(spans):
        out.append(Chunk(i, len(spans), a, text[a:b], doc.position(a)[0], doc.position(max(a, b - 1))[0]))
    return out


def _forms(value: object) -> list[str]:
    """Ways a value may be written in a document."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        forms = [str(value)]
        if float(value).is_integer():
            n = int(value)
            forms += [f"{n:,}", f"{n:,.2f}", f"{n}.00", str(n)]
        else:
            forms += [f"{value:,.2f}", f"{value:.2f}"]
        return list(dict.fromkeys(forms))
    if isinstance(value, str) and value.strip():
        return [value.strip()]
    return []


def locate(doc: Document, chunk: Chunk, value: object) -> dict[str, object]:
    """Where in the document a chunk's answer for a field appears: page and offset when the text holds
    it (case-insensitive, first occurrence in the chunk), else the chunk's pages."""
    where: dict[str, object] = {"chunk": chunk.index + 1, "pages": [chunk.page_from, chunk.page_to]}
    items = value if isinstance(value, list) else [value]
    lowered = chunk.text.lower()
    for item in items:
        for form in _forms(item):
            at = lowered.find(form.lower())
            if at < 0 and isinstance(item, (int, float)):
                at = _number_at(chunk.text, form)
            if at >= 0:
                page, offset = doc.position(chunk.start + at)
                where.update(page=page, offset=offset, length=len(form), found=True)
                return where
    where["found"] = False
    return where


def _number_at(text: str, form: str) -> int:
    m = re.search(r"(?<![\d.])" + re.escape(form) + r"(?![\d])", text)
    return m.start() if m else -1


def merge(fields: Sequence[str], answers: Sequence[tuple[Chunk, Mapping[str, object]]], doc: Document
          ) -> tuple[dict[str, object], dict[str, object]]:
    """One fact from the chunks' partial answers: for each field, the first chunk that gives a value
    (absent, null, "" and [] give none); and where each value came from."""
    merged: dict[str, object] = {}
    provenance: dict[str, object] = {}
    for name in fields:
        for chunk, answer in answers:
            value = answer.get(name)
            if value is None or value == "" or value == []:
                continue
            merged[name] = value
            provenance[name] = locate(doc, chunk, value)
            break
    return merged, provenance
