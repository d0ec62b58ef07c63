"""Report parameters: the time zone, ISO weeks and months as instants, the CSV negotiation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Query, Request

from app.core.config import get_settings
from app.core.errors import ValidationFailed, field_error
from app.reporting.schemas import MONTH_PATTERN, WEEK_PATTERN

# Reports cover the years a CRM can hold; outside them date arithmetic would overflow.
MIN_YEAR, MAX_YEAR = 1970, 2999


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(errors=[field_error(name, message)])


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise _invalid("tz", "unknown time zone; use an IANA name such as Asia/Shanghai") from None


async def report_zone(
    tz: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$",
            description="IANA time zone of the periods and of the times shown; default "
            "Asia/Shanghai (the service's setting)",
        ),
    ] = None,
) -> ZoneInfo:
    return zone_of(tz or get_settings().timezone)


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in a time zone, with the label it was asked by."""

    label: str | None
    start: datetime | None
    end: datetime | None
    zone: ZoneInfo


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def week_window(week: str | None, zone: ZoneInfo) -> Window:
    """`2026-W47` → Monday 00:00 to the next Monday 00:00; none: the week in progress."""
    if week is None:
        today = datetime.now(zone).date()
        monday = today - timedelta(days=today.weekday())
    else:
        year, number = int(week[:4]), int(week[6:])
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise _invalid("week", f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
        try:
            monday = date.fromisocalendar(year, number, 1)
        except ValueError:
            raise _invalid("week", f"{year} has no ISO week {number}") from None
    iso = monday.isocalendar()
    return Window(
        label=f"{iso.year}-W{iso.week:02d}",
        start=_midnight(monday, zone),
        end=_midnight(monday + timedelta(days=7), zone),
        zone=zone,
    )


def month_window(month: str | None, zone: ZoneInfo) -> Window:
    """`2026-11` → the 1st 00:00 to the next month's 1st 00:00; none: the month in progress."""
    if month is None:
        first = datetime.now(zone).date().replace(day=1)
    else:
        year, number = int(month[:4]), int(month[5:])
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise _invalid("month", f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
        first = date(year, number, 1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return Window(
        label=f"{first:%Y-%m}",
        start=_midnight(first, zone),
        end=_midnight(following, zone),
        zone=zone,
    )


def date_window(date_from: date | None, date_to: date | None, zone: ZoneInfo) -> Window:
    """Whole days from `date_from` through `date_to` (both inclusive, either may be open)."""
    for name, day in (("from", date_from), ("to", date_to)):
        if day is not None and not MIN_YEAR <= day.year <= MAX_YEAR:
            raise _invalid(name, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    if date_from is not None and date_to is not None and date_to < date_from:
        raise _invalid("to", "must not be before `from`")
    return Window(
        label=None,
        start=None if date_from is None else _midnight(date_from, zone),
        end=None if date_to is None else _midnight(date_to + timedelta(days=1), zone),
        zone=zone,
    )


WeekParam = Annotated[
    str | None,
    Query(
        pattern=WEEK_PATTERN,
        description="ISO week, e.g. 2026-W47 (Monday to Sunday); default: the week in progress",
    ),
]
MonthParam = Annotated[
    str | None,
    Query(
        pattern=MONTH_PATTERN,
        description="e.g. 2026-11; default: the month in progress",
    ),
]


def wants_csv(request: Request) -> bool:
    """`Accept: text/csv` (preferred over JSON by its q-value, or alone) asks for CSV."""
    best: tuple[float, str] = (0.0, "json")
    for part in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = {"text/csv": "csv", "application/json": "json"}.get(media.lower())
        if kind is not None and q > best[0]:
            best = (q, kind)
    return best[1] == "csv"
