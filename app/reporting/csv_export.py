"""Any report as one CSV table in long form: section, key, label, metric, value.

Every number is one row, so a spreadsheet pivots it whichever way it likes and the columns are
the same for every report. Sections are the JSON paths (`dimensions.source`, `tasks.by_assignee`);
a list item's `key` and `label` name its rows. A UTF-8 byte order mark lets Excel read the
Chinese labels.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

HEADER = ["section", "key", "label", "metric", "value"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _text(value: Any) -> str:
    # Names come from people (staff, channels): never let a spreadsheet run one as a formula.
    text = _cell(value)
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def _rows(section: str, data: dict[str, Any], key: Any, label: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    nested: list[tuple[str, Any]] = []
    for name, value in data.items():
        if name in {"key", "label"} and section:
            continue
        if isinstance(value, dict | list):
            nested.append((name, value))
        else:
            rows.append([section or "report", _text(key), _text(label), name, _cell(value)])
    for name, value in nested:
        path = f"{section}.{name}" if section else name
        if isinstance(value, dict):
            rows.extend(_rows(path, value, key, label))
        else:
            for item in value:
                if isinstance(item, dict):
                    rows.extend(_rows(path, item, item.get("key"), item.get("label")))
                else:
                    rows.append([path, _text(key), _text(label), "value", _cell(item)])
    return rows


def render(report: dict[str, Any]) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(_rows("", report, None, None))
    return out.getvalue()
