"""Dates and datetimes: how they are written, stored, compared and counted.

A ``date`` value is held as its ISO text ``YYYY-MM-DD``; a ``datetime`` as the UTC instant in ISO text,
``YYYY-MM-DDTHH:MM:SSZ`` (with ``.ffffff`` only when it has a fraction of a second). Facts therefore stay
plain JSON, records and replays keep exactly the text that was decided on, and two values of one kind
compare by :func:`sort_key`. Parsing is strict: a date is exactly ``YYYY-MM-DD``; a datetime must say its
offset (``Z`` or ``+02:00``), since an instant without one means different things in different places.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})\Z")
MIN_YEAR, MAX_YEAR = 1, 9999


class DateError(ValueError):
    """A text that is not a date (or datetime) Baton accepts; the message says why."""


def parse_date(text: str) -> date:
    if not _DATE.match(text):
        raise DateError(f"{_show(text)} is not a date: write YYYY-MM-DD, e.g. 2026-01-31")
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise DateError(f"{_show(text)} is not a date: {e}") from None


def parse_datetime(text: str) -> datetime:
    m = _DATETIME.match(text)
    if not m:
        hint = " (it has no offset: add Z for UTC, or +02:00)" if re.match(
            r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\Z", text) else ""
        raise DateError(f"{_show(text)} is not a datetime{hint}: write ISO 8601 with an offset, "
                        "e.g. 2026-01-31T09:00:00Z")
    day, hh, mm, ss, frac, offset = m.groups()
    micro = (frac[1:] + "000000")[:6] if frac else "000000"
    off = "+00:00" if offset in ("Z", "z") else offset if ":" in offset else offset[:3] + ":" + offset[3:]
    try:
        value = datetime.fromisoformat(f"{day}T{hh}:{mm}:{ss or '00'}.{micro}{off}")
        return value.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise DateError(f"{_show(text)} is not a datetime: {e}") from None


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def format_date(value: date) -> str:
    return value.isoformat()


def format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def canonical_date(text: str) -> str:
    return format_date(parse_date(text))


def canonical_datetime(text: str) -> str:
    return format_datetime(parse_datetime(text))


def sort_key(text: str) -> str:
    """A canonical date or datetime text as a key whose string order is time order."""
    return text if len(text) != 20 else text[:19] + ".000000Z"


@lru_cache(maxsize=4096)
def as_date(text: str) -> date:
    return date.fromisoformat(text)


@lru_cache(maxsize=4096)
def as_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00")


def from_timestamp(seconds: float) -> tuple[str, str]:
    """The decision's own date and datetime (UTC) from its recorded start time."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return format_date(moment.date()), format_datetime(moment)


def days_between(a: str, b: str, kind: str) -> int:
    """Whole days from a to b; negative when b is earlier. Datetimes: whole 24-hour periods, truncated
    toward zero."""
    if kind == "date":
        return (as_date(b) - as_date(a)).days
    delta = as_datetime(b) - as_datetime(a)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    whole = abs(micros) // 86_400_000_000
    return whole if micros >= 0 else -whole


def years_between(a: str, b: str, kind: str) -> int:
    """Whole years from a to b, counted as an age is: the anniversary must have been reached. A 29 February
    start reaches its anniversary on 1 March in other years. Negative when b is earlier."""
    if sort_key(b) < sort_key(a):
        return -years_between(b, a, kind)
    if kind == "date":
        x, y = as_date(a), as_date(b)
        return y.year - x.year - (1 if (y.month, y.day) < (x.month, x.day) else 0)
    p, q = as_datetime(a), as_datetime(b)
    return q.year - p.year - (1 if (q.month, q.day, q.time()) < (p.month, p.day, p.time()) else 0)


def add_days(value: str, n: int, kind: str) -> str:
    """``value`` moved by n days (datetimes: n times 24 hours). Raises OverflowError outside years 1-9999."""
    if kind == "date":
        return format_date(as_date(value) + timedelta(days=n))
    return format_datetime(as_datetime(value) + timedelta(days=n))
