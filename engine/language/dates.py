"""Dates and datetimes: how they are written, stored, compared and counted - in plain integer arithmetic.

A ``date`` value is held as its ISO text ``YYYY-MM-DD``; a ``datetime`` as the UTC instant in ISO text,
``YYYY-MM-DDTHH:MM:SSZ`` (with ``.ffffff`` only when it has a fraction of a second). Facts therefore stay
plain JSON, records and replays keep exactly the text that was decided on, and two values of one kind
compare by :func:`sort_key`. Parsing is strict: a date is exactly ``YYYY-MM-DD``; a datetime must say its
offset (``Z`` or ``+02:00``), since an instant without one means different things in different places.

The engine reads no clock, so this module does not use ``datetime`` either: the proleptic Gregorian
calendar is computed with the civil-from-days algorithms (H. Hinnant), days counted from 1970-01-01 and
instants in microseconds since 1970-01-01T00:00:00Z. Years run from 1 to 9999.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?"
                       r"([Zz]|[+-]\d{2}:?\d{2})\Z")
MIN_YEAR, MAX_YEAR = 1, 9999
DAY_US = 86_400_000_000


class DateError(ValueError):
    """A text that is not a date (or datetime) Baton accepts; the message says why."""


# -- the calendar ---------------------------------------------------------------------------------------

def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _month_days(y: int, m: int) -> int:
    return (31, 29 if _leap(y) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to y-m-d (negative before it)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    """The date ``z`` days after 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _in_range(y: int) -> None:
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise OverflowError(f"year {y} is outside 1-9999")


# -- text ------------------------------------------------------------------------------------------------

def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _ymd(y: int, m: int, d: int, text: str, what: str) -> None:
    if not 1 <= m <= 12:
        raise DateError(f"{_show(text)} is not a {what}: month must be 1-12")
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise DateError(f"{_show(text)} is not a {what}: year must be 1-9999")
    if not 1 <= d <= _month_days(y, m):
        raise DateError(f"{_show(text)} is not a {what}: day is out of range for the month")


def parse_date(text: str) -> int:
    """A ``YYYY-MM-DD`` text as days from 1970-01-01 (DateError when it is not a real date)."""
    m = _DATE.match(text)
    if not m:
        raise DateError(f"{_show(text)} is not a date: write YYYY-MM-DD, e.g. 2026-01-31")
    y, mo, d = (int(g) for g in m.groups())
    _ymd(y, mo, d, text, "date")
    return days_from_civil(y, mo, d)


def parse_datetime(text: str) -> int:
    """An ISO 8601 datetime with an offset as microseconds since 1970-01-01T00:00:00Z."""
    m = _DATETIME.match(text)
    if not m:
        hint = " (it has no offset: add Z for UTC, or +02:00)" if re.match(
            r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\Z", text) else ""
        raise DateError(f"{_show(text)} is not a datetime{hint}: write ISO 8601 with an offset, "
                        "e.g. 2026-01-31T09:00:00Z")
    y, mo, d, hh, mm = (int(g) for g in m.groups()[:5])
    ss = int(m.group(6) or 0)
    micro = int((m.group(7)[1:] + "000000")[:6]) if m.group(7) else 0
    _ymd(y, mo, d, text, "datetime")
    if hh > 23 or mm > 59 or ss > 59:
        raise DateError(f"{_show(text)} is not a datetime: the time must be 00:00:00 to 23:59:59")
    offset = m.group(8)
    shift = 0
    if offset not in ("Z", "z"):
        oh, om = int(offset[1:3]), int(offset[-2:])
        if oh > 23 or om > 59:
            raise DateError(f"{_show(text)} is not a datetime: bad offset {offset}")
        shift = (oh * 60 + om) * 60 * (1 if offset[0] == "+" else -1)
    seconds = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss - shift
    instant = seconds * 1_000_000 + micro
    year = civil_from_days(instant // DAY_US)[0]
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise DateError(f"{_show(text)} is not a datetime: in UTC it falls outside the years 1-9999")
    return instant


def format_date(days: int) -> str:
    y, m, d = civil_from_days(days)
    _in_range(y)
    return f"{y:04d}-{m:02d}-{d:02d}"


def format_datetime(instant: int) -> str:
    days, rest = divmod(instant, DAY_US)
    secs, micro = divmod(rest, 1_000_000)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    text = f"{format_date(days)}T{hh:02d}:{mm:02d}:{ss:02d}"
    return text + (f".{micro:06d}Z" if micro else "Z")


def canonical_date(text: str) -> str:
    return format_date(parse_date(text))


def canonical_datetime(text: str) -> str:
    return format_datetime(parse_datetime(text))


def sort_key(text: str) -> str:
    """A canonical date or datetime text as a key whose string order is time order."""
    return text if len(text) != 20 else text[:19] + ".000000Z"


@lru_cache(maxsize=4096)
def as_date(text: str) -> int:
    """A canonical date text as days from 1970-01-01."""
    return days_from_civil(int(text[:4]), int(text[5:7]), int(text[8:10]))


@lru_cache(maxsize=4096)
def as_instant(text: str) -> int:
    """A canonical datetime text as microseconds since the epoch."""
    micro = int(text[20:26]) if len(text) == 27 else 0
    return (as_date(text[:10]) * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])) \
        * 1_000_000 + micro


def from_timestamp(seconds: float) -> tuple[str, str]:
    """The decision's own date and datetime (UTC) from its recorded start time (as CPython rounds a float
    timestamp to microseconds: half to even)."""
    if not math.isfinite(seconds):
        raise OverflowError("not a time")
    frac, whole = math.modf(seconds)
    micro = round(frac * 1e6)
    instant = int(whole) * 1_000_000 + micro
    return format_date(instant // DAY_US), format_datetime(instant)


# -- arithmetic --------------------------------------------------------------------------------------------

def days_between(a: str, b: str, kind: str) -> int:
    """Whole days from a to b; negative when b is earlier. Datetimes: whole 24-hour periods, truncated
    toward zero."""
    if kind == "date":
        return as_date(b) - as_date(a)
    diff = as_instant(b) - as_instant(a)
    whole = abs(diff) // DAY_US
    return whole if diff >= 0 else -whole


def years_between(a: str, b: str, kind: str) -> int:
    """Whole years from a to b, counted as an age is: the anniversary must have been reached. A 29 February
    start reaches its anniversary on 1 March in other years. Negative when b is earlier."""
    if sort_key(b) < sort_key(a):
        return -years_between(b, a, kind)
    ya, ma, da = int(a[:4]), int(a[5:7]), int(a[8:10])
    yb, mb, db = int(b[:4]), int(b[5:7]), int(b[8:10])
    if kind == "date":
        return yb - ya - (1 if (mb, db) < (ma, da) else 0)
    return yb - ya - (1 if (mb, db, sort_key(b)[11:]) < (ma, da, sort_key(a)[11:]) else 0)


def add_months(value: str, n: int) -> str:
    """``value`` (a date, or a UTC datetime's date part) moved by n calendar months, landing on the month's
    last day when its day does not exist there (2024-01-31 plus one month is 2024-02-29), as DMN and
    Java's ``plusMonths`` do. Raises OverflowError outside years 1-9999."""
    y, m, d = int(value[0:4]), int(value[5:7]), int(value[8:10])
    year, month = divmod(y * 12 + (m - 1) + n, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("year out of range")
    return f"{year:04d}-{month + 1:02d}-{min(d, _month_days(year, month + 1)):02d}{value[10:]}"


def add_days(value: str, n: int, kind: str) -> str:
    """``value`` moved by n days (datetimes: n times 24 hours). Raises OverflowError outside years 1-9999."""
    if kind == "date":
        return format_date(as_date(value) + n)
    return format_datetime(as_instant(value) + n * DAY_US)
