"""ORM models, one module per aggregate; importing this package registers every table."""

from app.models.audit import AuditLog
from app.models.customer import (
    Customer,
    CustomerCodeCounter,
    CustomField,
    IdempotencyKey,
    SourceChannel,
)
from app.models.imports import ImportIssue, ImportJob
from app.models.user import LoginFailure, RefreshToken, ServiceAccount, User

__all__ = [
    "AuditLog",
    "CustomField",
    "Customer",
    "CustomerCodeCounter",
    "IdempotencyKey",
    "ImportIssue",
    "ImportJob",
    "LoginFailure",
    "RefreshToken",
    "ServiceAccount",
    "SourceChannel",
    "User",
]
