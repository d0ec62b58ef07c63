"""ORM models, one module per aggregate; importing this package registers every table."""

from app.models.audit import AuditLog
from app.models.customer import (
    Consent,
    Customer,
    CustomerCodeCounter,
    CustomField,
    IdempotencyKey,
    SourceChannel,
)
from app.models.identity import CustomerMerge, DuplicateCandidate, WebhookInbox, WebhookSource
from app.models.imports import ImportIssue, ImportJob
from app.models.interaction import Interaction, Task
from app.models.saved_segment import SavedSegment
from app.models.segment import SegmentRuleSet, SegmentSweep, TierChange
from app.models.tag import CustomerTag, Tag, TagCategory
from app.models.user import LoginFailure, RefreshToken, ServiceAccount, User

__all__ = [
    "AuditLog",
    "Consent",
    "CustomField",
    "Customer",
    "CustomerCodeCounter",
    "CustomerMerge",
    "CustomerTag",
    "DuplicateCandidate",
    "IdempotencyKey",
    "ImportIssue",
    "ImportJob",
    "Interaction",
    "LoginFailure",
    "RefreshToken",
    "SavedSegment",
    "SegmentRuleSet",
    "SegmentSweep",
    "ServiceAccount",
    "SourceChannel",
    "Tag",
    "TagCategory",
    "Task",
    "TierChange",
    "User",
    "WebhookInbox",
    "WebhookSource",
]
