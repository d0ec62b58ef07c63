"""Who is calling: a staff user or a service account, with the scopes it holds."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.permissions import OWN_CUSTOMERS_ONLY, Role


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "user" or "service"
    id: int
    role: Role | None
    scopes: frozenset[str]

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def user_id(self) -> int | None:
        return self.id if self.kind == "user" else None

    @property
    def own_customers_only(self) -> bool:
        return self.role in OWN_CUSTOMERS_ONLY

    @property
    def sees_pii(self) -> bool:
        return "pii:read" in self.scopes

    @property
    def sees_contract_amount(self) -> bool:
        return "contract:read" in self.scopes

    def has(self, scope: str) -> bool:
        return scope in self.scopes


SYSTEM = Principal(kind="system", id=0, role=Role.admin, scopes=frozenset())
