"""Custom field definitions: the admin-editable part of the customer record."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FieldType = Literal["text", "number", "date", "enum", "bool"]
FieldKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class CustomFieldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    key: FieldKey
    label: Annotated[str, Field(min_length=1, max_length=60)]
    type: FieldType
    options: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=60)]], Field(max_length=100)
    ] = []
    required: bool = False

    @model_validator(mode="after")
    def _options_for_enum(self) -> CustomFieldCreate:
        if self.type == "enum" and not self.options:
            raise ValueError("an enum field needs options")
        if self.type != "enum" and self.options:
            raise ValueError("only enum fields have options")
        if len(set(self.options)) != len(self.options):
            raise ValueError("options must be unique")
        return self


class CustomFieldUpdate(BaseModel):
    """Type and key are fixed once values exist; label, options (added) and required change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    options: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=60)]], Field(max_length=100)]
        | None
    ) = None
    required: bool | None = None


class CustomFieldRead(BaseModel):
    key: str
    label: str
    type: FieldType
    options: list[str]
    required: bool
    retired_at: datetime | None
    created_at: datetime
