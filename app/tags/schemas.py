"""Tag API shapes: categories, tags, tagging one customer and bulk tagging."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.customers.schemas import TagRef

# Free-text tag lists on import are split on these (SPEC §6), so no tag name may contain one.
SEPARATORS = "、，,;；"


def _tag_name(value: str) -> str:
    if any(ch in value for ch in SEPARATORS):
        raise ValueError(f"a tag name cannot contain {' '.join(SEPARATORS)} (they separate tags)")
    return value


TagName = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_tag_name)]
CategoryCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
Label = Annotated[str, Field(min_length=1, max_length=60)]
Description = Annotated[str, Field(max_length=500)]


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TagCategoryCreate(_Write):
    code: CategoryCode = Field(description="English snake_case code, e.g. `industry_event`.")
    label: Label = Field(description="The Chinese label, e.g. 行业活动.")


class TagCategoryUpdate(_Write):
    label: Label | None = None


class TagCategoryRead(BaseModel):
    code: str
    label: str
    builtin: bool
    created_at: datetime


class TagCreate(_Write):
    category: Annotated[str, Field(min_length=1, max_length=40)] = Field(
        description="The category code (GET /tag-categories)."
    )
    name: TagName = Field(description="Unique within its category, whatever the letter case.")
    description: Description | None = None


class TagUpdate(_Write):
    """Only the fields sent change; moving a tag to another category keeps its customers."""

    category: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    name: TagName | None = None
    description: Description | None = None


class TagRead(BaseModel):
    id: int
    name: str
    category: str
    category_label: str
    description: str | None
    customer_count: int | None = Field(
        default=None, description="Customers you may see that carry it (with `with_count`)."
    )
    created_at: datetime
    updated_at: datetime


class TagPage(BaseModel):
    items: list[TagRead]
    next_cursor: str | None


class CustomerTags(BaseModel):
    code: str
    tags: list[TagRef]


# A longer list goes through a saved segment; this keeps the body under the size limit.
MAX_BULK_CODES = 50_000


class BulkTagRequest(_Write):
    """Tag or untag the customers named by `codes`, or every member of a saved segment."""

    action: Literal["add", "remove"]
    codes: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=20)]],
            Field(min_length=1, max_length=MAX_BULK_CODES),
        ]
        | None
    ) = None
    segment_id: int | None = None

    @model_validator(mode="after")
    def _one_target(self) -> BulkTagRequest:
        if (self.codes is None) == (self.segment_id is None):
            raise ValueError("give exactly one of `codes` or `segment_id`")
        return self


class BulkTagResult(BaseModel):
    tag_id: int
    action: Literal["add", "remove"]
    matched: int = Field(description="Targeted customers you may change.")
    changed: int = Field(description="Customers actually tagged or untagged (0 on a re-run).")
    unmatched_codes: int | None = Field(
        default=None,
        description="Codes given that name no customer you may change (by `codes` only).",
    )
