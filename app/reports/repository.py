"""Report SQL: one set-based pass over the customers the caller may see."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONPATH
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.customers.repository import readable
from app.models.customer import Customer

C = Customer.__table__.c


def _reachable() -> ColumnElement[bool]:
    contact_reach = func.jsonb_path_exists(
        C.contacts, cast(literal("$[*] ? (@.phones.size() > 0 || exists(@.email))"), JSONPATH)
    )
    return or_(C.phone.is_not(None), C.email.is_not(None), contact_reach)


def _filled(column: Any) -> ColumnElement[bool]:
    return and_(column.is_not(None), func.btrim(column) != "")


# Key fields of the completeness score: (name, applies to, is filled).
def key_fields() -> list[tuple[str, ColumnElement[bool], ColumnElement[bool]]]:
    every = literal(True)
    return [
        ("contact", every, _reachable()),
        ("industry", C.kind == "enterprise", C.industry.is_not(None)),
        ("source", every, C.source.is_not(None)),
        ("region", every, or_(_filled(C.province), _filled(C.city))),
        ("contact_person", every, func.jsonb_array_length(C.contacts) > 0),
        ("core_needs", every, _filled(C.core_needs)),
        ("owner", every, C.owner_id.is_not(None)),
    ]


async def data_quality(session: AsyncSession, principal: Principal) -> dict[str, int]:
    columns: list[Any] = [func.count().label("total")]
    for name, applies, filled in key_fields():
        columns.append(func.count().filter(applies).label(f"{name}__applicable"))
        columns.append(func.count().filter(and_(applies, filled)).label(f"{name}__filled"))
    complete = and_(*(or_(~applies, filled) for _, applies, filled in key_fields()))
    columns += [
        func.count().filter(complete).label("complete"),
        func.count().filter(C.flags.contains(["to_verify"])).label("to_verify"),
        func.count().filter(C.flags.contains(["to_complete"])).label("to_complete"),
    ]
    row = (await session.execute(select(*columns).where(readable(principal)))).one()
    return {k: int(v or 0) for k, v in row._mapping.items()}
