"""Report shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FieldCompleteness(BaseModel):
    field: str
    label: str
    filled: int
    applicable: int = Field(description="Customers the field applies to (industry: enterprises).")
    completeness: float


class DataQualityReport(BaseModel):
    """Over the customers you may see. Completeness = filled key-field cells / applicable ones."""

    customers: int
    completeness: float
    target: float
    meets_target: bool
    complete_customers: int = Field(description="Customers with every applicable key field.")
    fields: list[FieldCompleteness]
    to_verify: int = Field(description="Customers flagged 待核实 (e.g. a phone that did not parse)")
    to_complete: int = Field(description="Customers flagged 待补充 (key fields missing)")
    duplicates_pending: int = Field(
        description="Duplicate candidates awaiting review, among the customers you can see."
    )
