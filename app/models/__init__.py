"""ORM models, one module per aggregate; importing this package registers every table."""

from app.models.audit import AuditLog
from app.models.customer import (
    Customer,
    CustomerCodeCounter,
    CustomField,
    IdempotencyKey,
    SourceChannel,
)
from app.models.saved_segment import SavedSegment
from app.models.tag import CustomerTag, Tag, TagCategory
from app.models.user import LoginFailure, RefreshToken, ServiceAccount, User

__all__ = [
    "AuditLog",
    "CustomField",
    "Customer",
    "CustomerCodeCounter",
    "CustomerTag",
    "IdempotencyKey",
    "LoginFailure",
    "RefreshToken",
    "SavedSegment",
    "ServiceAccount",
    "SourceChannel",
    "Tag",
    "TagCategory",
    "User",
]
