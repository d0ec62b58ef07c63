"""Roles and scopes (SPEC §7) as one table. Routes name a scope; tests are generated from here."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    manager = "manager"
    sales = "sales"
    service = "service"
    marketing = "marketing"
    data_admin = "data_admin"


ROLE_LABELS_ZH = {
    Role.admin: "系统管理员",
    Role.manager: "销售经理",
    Role.sales: "销售代表",
    Role.service: "客服",
    Role.marketing: "市场",
    Role.data_admin: "数据管理员",
}

# Every scope a route can require. Service accounts are granted a subset of these.
SCOPES: dict[str, str] = {
    "customers:read": "read customers visible to the caller",
    "customers:write": "create and change customers, tag them",
    "customers:delete": "soft-delete customers",
    "customers:restore": "restore soft-deleted customers",
    "customers:assign": "change a customer's owner",
    "customers:claim": "claim a customer from the shared pool",
    "pii:read": "see phones, emails and contact details unmasked",
    "contract:read": "see contract amounts",
    "fields:admin": "define custom fields",
    "interactions:read": "read interactions",
    "interactions:write": "record interactions",
    "tasks:read": "read tasks and reminders",
    "tasks:write": "create and change tasks",
    "tags:read": "read tags",
    "tags:write": "define tags and bulk-tag",
    "segments:read": "read segments and tiers",
    "segments:write": "create saved segments",
    "rules:admin": "edit segmentation rules and start recomputes",
    "imports:write": "import customers",
    "exports:read": "export customer lists",
    "merge:write": "merge duplicate customers",
    "reports:read": "read reports",
    "users:admin": "manage users and service accounts",
    "audit:read": "read and verify the audit log",
    "webhooks:ingest": "deliver webhook events",
    "webhooks:admin": "manage webhook sources",
    "privacy:admin": "data-subject export and erasure",
    "sensitive:read": "reveal ID numbers and bank accounts (each reveal is audited)",
    "meta:read": "read enums and field definitions",
}

_READ_BASE = {"customers:read", "meta:read", "tags:read", "segments:read"}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.admin: frozenset(SCOPES),
    Role.manager: frozenset(
        _READ_BASE
        | {
            "customers:write",
            "customers:delete",
            "customers:assign",
            "pii:read",
            "contract:read",
            "interactions:read",
            "interactions:write",
            "tasks:read",
            "tasks:write",
            "tags:write",
            "segments:write",
            "reports:read",
            "exports:read",
        }
    ),
    Role.sales: frozenset(
        _READ_BASE
        | {
            "customers:write",
            "customers:claim",
            "pii:read",
            "contract:read",
            "interactions:read",
            "interactions:write",
            "tasks:read",
            "tasks:write",
            "segments:write",
            "exports:read",  # their own customers only: exports apply the list's visibility
        }
    ),
    Role.service: frozenset(
        _READ_BASE
        | {"pii:read", "interactions:read", "interactions:write", "tasks:read", "tasks:write"}
    ),
    Role.marketing: frozenset(
        _READ_BASE
        | {"contract:read", "tags:write", "segments:write", "reports:read", "exports:read"}
    ),
    Role.data_admin: frozenset(
        _READ_BASE
        | {
            "customers:write",
            "pii:read",
            "contract:read",
            "interactions:read",
            "tags:write",
            "imports:write",
            "exports:read",
            "merge:write",
        }
    ),
}

# Roles whose visibility is limited to the customers they own plus the shared pool.
OWN_CUSTOMERS_ONLY = frozenset({Role.sales})
