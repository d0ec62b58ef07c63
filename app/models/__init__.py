"""ORM models, one module per aggregate; importing this package registers every table."""

from app.models.audit import AuditLog
from app.models.customer import (
    Customer,
    CustomerCodeCounter,
    CustomField,
    IdempotencyKey,
    SourceChannel,
)
from app.models.interaction import Interaction, Task
from app.models.segment import SegmentRuleSet, SegmentSweep, TierChange
from app.models.user import LoginFailure, RefreshToken, ServiceAccount, User

__all__ = [
    "AuditLog",
    "CustomField",
    "Customer",
    "CustomerCodeCounter",
    "IdempotencyKey",
    "Interaction",
    "LoginFailure",
    "RefreshToken",
    "SegmentRuleSet",
    "SegmentSweep",
    "ServiceAccount",
    "SourceChannel",
    "Task",
    "TierChange",
    "User",
]
