"""Connector secrets: only references in config, resolved at start, re-read on SIGHUP or a TTL, and
redacted from everything Baton writes.

References: ``${env:NAME}`` (an environment variable) and ``${file:PATH}`` (a file's content without
its trailing newline; relative to the config file; for mounted secrets such as Kubernetes/Vault agent
files). A connector keeps the *template* and asks for its current value when it connects or calls, so a
rotated secret is used without a restart. Every value ever resolved is remembered for redaction:
log lines, stored failure facts and error messages, outbox errors and metrics labels pass through
:func:`redact`, which replaces it with ``[secret]``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

REF = re.compile(r"\$\{(env|file):([^}]+)\}")
MIN_SECRET = 4  # shorter values are not redacted (they would mangle ordinary text)
log = logging.getLogger("baton.secrets")


class Secrets:
    def __init__(self, base: Path | None = None, ttl_s: float | None = None) -> None:
        self.base = base or Path.cwd()
        self.ttl_s = ttl_s
        self.templates: dict[str, str] = {}  # template -> current value
        self.where: dict[str, str] = {}  # template -> the config key it came from (for messages)
        self.known: set[str] = set()  # every value ever resolved (old ones too: they may be in flight)
        self.version = 0
        self.read_at = time.monotonic()
        self.lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def configure(self, base: Path, ttl_s: float | None = None) -> None:
        """Where ``${file:...}`` references are read from (the config's folder) and how long a value read is
        kept: set once, at start, by the composition root (or by a config being loaded)."""
        self.base, self.ttl_s = base, ttl_s

    def _read(self, template: str, where: str) -> str:
        def sub(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2).strip()
            if kind == "env":
                if ref not in os.environ:
                    raise ValueError(f"{where}: environment variable {ref} is not set")
                value = os.environ[ref]
            else:
                path = Path(ref) if Path(ref).is_absolute() else self.base / ref
                try:
                    value = path.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as e:
                    raise ValueError(f"{where}: cannot read secret file {path}: {e.strerror}") from None
            if len(value) >= MIN_SECRET:
                self.known.add(value)
            return value

        return REF.sub(sub, template)

    def resolve(self, template: str, where: str) -> str:
        """The value of a config string with references; remembered for refresh and redaction."""
        if not REF.search(template):
            return template
        with self.lock:
            value = self._read(template, where)
            self.templates[template] = value
            self.where[template] = where
            self._pattern = None
        return value

    def value(self, template: str) -> str:
        """The current value of a template resolved before (re-read first when the TTL has passed)."""
        if self.ttl_s is not None and time.monotonic() - self.read_at > self.ttl_s:
            self.refresh()
        return self.templates.get(template, template)

    def refresh(self) -> list[str]:
        """Re-read every reference; the config keys whose value changed. A reference that cannot be read
        now keeps its last value (and is logged), so a half-written rotation never takes a connector down."""
        changed = []
        with self.lock:
            for template, old in list(self.templates.items()):
                try:
                    new = self._read(template, self.where[template])
                except ValueError as e:
                    log.warning("secret not re-read, keeping the previous value: %s", e)
                    continue
                if new != old:
                    self.templates[template] = new
                    changed.append(self.where[template])
            self.read_at = time.monotonic()
            if changed:
                self.version += 1
                self._pattern = None
        if changed:
            log.info("secrets rotated: %s", ", ".join(changed))
        return changed

    def redact(self, text: str) -> str:
        if not self.known or not text:
            return text
        pattern = self._pattern
        if pattern is None:
            values = sorted(self.known, key=len, reverse=True)
            pattern = self._pattern = re.compile("|".join(re.escape(v) for v in values))
        return pattern.sub("[secret]", text)


SECRETS = Secrets()  # the process's secrets: connectors resolve through it, logs redact through it


def redact(text: str) -> str:
    return SECRETS.redact(text)


def resolve_secrets(value: str, where: str) -> str:
    """A config string with ``${env:..}``/``${file:..}`` references, resolved now and remembered."""
    return SECRETS.resolve(value, where)


class RedactingFilter(logging.Filter):
    """Redacts secrets from every log record, whatever handler or format writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if SECRETS.known:
            message = record.getMessage()
            cleaned = SECRETS.redact(message)
            if cleaned != message or record.args:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = SECRETS.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
