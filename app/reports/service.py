"""Report rules: what the data-quality numbers mean (SPEC §9)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.identity import repository as identity_repo
from app.reports import repository as repo

COMPLETENESS_TARGET = 0.9
FIELD_LABELS = {
    "contact": "联系方式（电话或邮箱）",
    "industry": "所属行业（企业客户）",
    "source": "客户来源",
    "region": "地区",
    "contact_person": "联系人",
    "core_needs": "核心需求",
    "owner": "跟进人",
}


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 1.0


async def data_quality(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """Completeness per key field and overall (filled cells over applicable cells), flags."""
    counts = await repo.data_quality(session, principal)
    fields = []
    filled_all = applicable_all = 0
    for name, label in FIELD_LABELS.items():
        applicable = counts[f"{name}__applicable"]
        filled = counts[f"{name}__filled"]
        filled_all += filled
        applicable_all += applicable
        fields.append(
            {
                "field": name,
                "label": label,
                "filled": filled,
                "applicable": applicable,
                "completeness": _ratio(filled, applicable),
            }
        )
    overall = _ratio(filled_all, applicable_all)
    return {
        "customers": counts["total"],
        "completeness": overall,
        "target": COMPLETENESS_TARGET,
        "meets_target": overall >= COMPLETENESS_TARGET,
        "complete_customers": counts["complete"],
        "fields": fields,
        "to_verify": counts["to_verify"],
        "to_complete": counts["to_complete"],
        "duplicates_pending": await identity_repo.count_pending(session, principal),
    }
