"""What an endpoint sends to PostgreSQL, as recorded from the app (`bench.capture`).

A plan is the ordered list of round trips one request makes — transaction control, the pool's
pre-ping, and each statement with its arguments — so pgbench and the stack app replay exactly
the app's SQL. This module stays light (no app imports): the stack app loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

CODE = "code"  # the customer code: from the URL (get), the body, or the counter (create)


@dataclass(frozen=True)
class Slot:
    """An argument that differs per request: an input of the request (the customer code of a
    get, the webhook-id of a delivery) or a value an earlier statement returned (the new
    inbox row's id, the customer the phone matched)."""

    name: str


@dataclass(frozen=True)
class Sets:
    """This statement's first row gives slot `name` (column `column`, position `index`)."""

    name: str
    column: str
    index: int


@dataclass
class Step:
    kind: str  # "control" (BEGIN/COMMIT/ROLLBACK), "ping" (the pre-ping's empty query), "sql"
    sql: str
    args: list[Any] = field(default_factory=list)
    # The statement returns the per-day code number; the code is C<code_day><number, 3 digits>.
    code_day: str | None = None
    sets: list[Sets] = field(default_factory=list)


@dataclass
class Endpoint:
    name: str
    method: str
    variants: list[list[Step]]
    result_step: int  # the step whose rows form the response body; -1: each variant's last
    single: bool  # the response is one object (get, create), else a page
    result_steps: list[int] = field(default_factory=list)  # per variant, where they differ
    # pgbench: per variant, the values a request may draw (one dict of integers each, e.g. the
    # digits of a customer code); per slot, the SQL expression that stands for it.
    choices: list[list[dict[str, int]]] = field(default_factory=list)
    expressions: dict[str, str] = field(default_factory=dict)
    randoms: dict[str, list[int]] = field(default_factory=dict)  # pgbench variable: [lo, hi]


Plan = dict[str, Endpoint]


def encode_value(value: Any) -> Any:
    if isinstance(value, Slot):
        return {"$slot": value.name}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot record a {type(value).__name__} argument")


def decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict):
        ((tag, raw),) = value.items()
        decoders: dict[str, Any] = {
            "$slot": Slot,
            "$datetime": datetime.fromisoformat,
            "$date": date.fromisoformat,
            "$decimal": Decimal,
            "$uuid": UUID,
        }
        return decoders[tag](raw)
    return value


def dump(plan: Plan, path: Path) -> None:
    data = {
        name: {
            "method": ep.method,
            "result_step": ep.result_step,
            "single": ep.single,
            "result_steps": ep.result_steps,
            "choices": ep.choices,
            "expressions": ep.expressions,
            "randoms": ep.randoms,
            "variants": [
                [
                    {
                        "kind": s.kind,
                        "sql": s.sql,
                        "args": [encode_value(a) for a in s.args],
                        "code_day": s.code_day,
                        "sets": [[x.name, x.column, x.index] for x in s.sets],
                    }
                    for s in steps
                ]
                for steps in ep.variants
            ],
        }
        for name, ep in plan.items()
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1))


def load(path: Path) -> Plan:
    data = json.loads(path.read_text())
    return {
        name: Endpoint(
            name=name,
            method=raw["method"],
            result_step=raw["result_step"],
            single=raw["single"],
            result_steps=raw.get("result_steps", []),
            choices=raw.get("choices", []),
            expressions=raw.get("expressions", {}),
            randoms=raw.get("randoms", {}),
            variants=[
                [
                    Step(
                        kind=s["kind"],
                        sql=s["sql"],
                        args=[decode_value(a) for a in s["args"]],
                        code_day=s["code_day"],
                        sets=[Sets(*x) for x in s.get("sets", [])],
                    )
                    for s in steps
                ]
                for steps in raw["variants"]
            ],
        )
        for name, raw in data.items()
    }


def substitute(args: list[Any], slots: dict[str, Any]) -> list[Any]:
    """The arguments with every slot (also inside a list) replaced by its value."""
    return [
        slots[a.name] if isinstance(a, Slot) else substitute(a, slots) if isinstance(a, list) else a
        for a in args
    ]


def code_from_number(day: str, number: int) -> str:
    """The code the app builds from the counter (repository.next_code: C + day + 3+ digits)."""
    return f"C{day}{number:03d}"
