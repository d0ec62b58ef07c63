"""Customer API shapes. Writes forbid unknown fields; enum inputs accept codes or Chinese labels."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    WithJsonSchema,
)

from app.customers import enums
from app.customers.industries import industry_label, resolve_industry
from app.customers.normalize import normalize_phone


def _convert(name: str) -> BeforeValidator:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            code = enums.resolve(name, value)
            if code is None:
                raise ValueError(f"must be one of: {', '.join(enums.codes(name))}")
            return code
        return value

    return BeforeValidator(convert)


def _schema(name: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": enums.codes(name)})


def _phone(value: str) -> str:
    e164 = normalize_phone(value)
    if e164 is None:
        raise ValueError("not a valid phone number (mainland numbers may omit +86)")
    return e164


def _industry(value: str) -> str:
    code = resolve_industry(value)
    if code is None:
        raise ValueError(
            "unknown industry: use a GB/T 4754-2017 section letter (A–T), a division code "
            "(01–97) or its Chinese name; GET /api/v1/meta/enums lists them"
        )
    industry_label(code)
    return code


def _id_number(value: str) -> str:
    from app.privacy.crypto import normalize, valid_resident_id

    v = normalize(value)
    if not 5 <= len(v) <= 30:
        raise ValueError("an ID document number has 5 to 30 letters and digits")
    if len(v) == 18 and v[:17].isdigit() and not valid_resident_id(v):
        raise ValueError("not a valid resident ID number (checksum)")
    return v


def _bank_account(value: str) -> str:
    v = "".join(ch for ch in value if ch.isalnum())
    if not (8 <= len(v) <= 34 and v.isalnum()):
        raise ValueError("a bank account number has 8 to 34 letters and digits")
    return v.upper()


Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
IdNumber = Annotated[str, Field(max_length=40), AfterValidator(_id_number)]
BankAccount = Annotated[str, Field(max_length=50), AfterValidator(_bank_account)]
Industry = Annotated[str, Field(max_length=60), AfterValidator(_industry)]
Email = Annotated[EmailStr, AfterValidator(lambda v: str(v).lower())]
Money = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]
ShortText = Annotated[str, Field(max_length=200)]
LongText = Annotated[str, Field(max_length=5000)]

Kind = Annotated[str, _convert("kind"), _schema("kind")]
Gender = Annotated[str, _convert("gender"), _schema("gender")]
AgeBand = Annotated[str, _convert("age_band"), _schema("age_band")]
EmployeeBand = Annotated[str, _convert("employee_band"), _schema("employee_band")]
RevenueBand = Annotated[str, _convert("revenue_band"), _schema("revenue_band")]
PriceSensitivity = Annotated[str, _convert("price_sensitivity"), _schema("price_sensitivity")]
NeedPriority = Annotated[str, _convert("need_priority"), _schema("need_priority")]
DecisionRole = Annotated[str, _convert("decision_role"), _schema("decision_role")]
CooperationStatus = Annotated[str, _convert("cooperation_status"), _schema("cooperation_status")]
Lifecycle = Annotated[str, _convert("lifecycle"), _schema("lifecycle")]
ValueTier = Annotated[str, _convert("value_tier"), _schema("value_tier")]
Flag = Annotated[str, _convert("flag"), _schema("flag")]


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Contact(_Write):
    name: Annotated[str, Field(min_length=1, max_length=60)]
    title: Annotated[str, Field(max_length=60)] | None = None
    phones: Annotated[list[Phone], Field(max_length=10)] = []
    email: Email | None = None
    wechat_id: Annotated[str, Field(max_length=60)] | None = None
    decision_role: DecisionRole | None = None


class Region(_Write):
    province: Annotated[str, Field(max_length=40)] | None = None
    city: Annotated[str, Field(max_length=40)] | None = None


class _CustomerFields(_Write):
    kind: Kind | None = None
    contacts: Annotated[list[Contact], Field(max_length=50)] | None = None
    phone: Phone | None = None
    email: Email | None = None
    industry: Industry | None = None
    region: Region | None = None
    address: Annotated[str, Field(max_length=300)] | None = None
    employee_band: EmployeeBand | None = None
    revenue_band: RevenueBand | None = None
    gender: Gender | None = None
    age_band: AgeBand | None = None
    occupation: Annotated[str, Field(max_length=60)] | None = None
    price_sensitivity: PriceSensitivity | None = None
    consumption_habits: LongText | None = None
    source: Annotated[str, Field(max_length=30)] | None = None
    referrer: Annotated[str, Field(max_length=100)] | None = None
    first_contact_at: AwareDatetime | None = None
    core_needs: LongText | None = None
    need_tags: (
        Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=30)] | None
    ) = None
    budget: Money | None = None
    need_priority: NeedPriority | None = None
    decision_makers: Annotated[str, Field(max_length=500)] | None = None
    next_follow_up_at: AwareDatetime | None = None
    lifecycle: Lifecycle | None = Field(
        default=None,
        description="A baseline used while the service holds too little history to decide.",
    )
    cooperation_status: CooperationStatus | None = None
    first_cooperation_date: date | None = None
    last_cooperation_date: date | None = None
    products: (
        Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=50)] | None
    ) = None
    contract_amount: Money | None = None
    custom: dict[str, Any] | None = None
    id_number: IdNumber | None = Field(
        default=None,
        description="ID document number; stored encrypted; needs a sensitive_data consent.",
    )
    bank_account: BankAccount | None = Field(
        default=None, description="Stored encrypted; needs a sensitive_data consent."
    )


class CustomerCreate(_CustomerFields):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    owner_id: int | None = Field(
        default=None, description="Managers and admins only; a sales rep owns what they create."
    )


class CustomerUpdate(_CustomerFields):
    """Every field optional; only the fields sent are changed (null clears a field)."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class AssignRequest(_Write):
    owner_id: int | None = Field(description="The new owner; null releases to the shared pool.")


class RFM(BaseModel):
    r: int | None
    f: int | None
    m: int | None
    segment: str | None


class TagRef(BaseModel):
    """A tag as a customer carries it; `category` is the category code (e.g. need_type)."""

    id: int
    name: str
    category: str


class CustomerRead(BaseModel):
    """Money is a decimal string ("120000.00"); masked values look like 138****5678."""

    code: str
    kind: str
    name: str
    contacts: list[dict[str, Any]]
    phone: str | None
    raw_phone: str | None = Field(
        default=None,
        description="A phone as written in an imported sheet that did not parse (to_verify).",
    )
    email: str | None
    industry: str | None
    industry_label: str | None
    region: Region
    address: str | None
    employee_band: str | None
    revenue_band: str | None
    gender: str | None
    age_band: str | None
    occupation: str | None
    price_sensitivity: str | None
    consumption_habits: str | None
    source: str | None
    referrer: str | None
    first_contact_at: datetime | None
    core_needs: str | None
    need_tags: list[str]
    budget: str | None
    need_priority: str | None
    decision_makers: str | None
    owner_id: int | None
    last_follow_up_at: datetime | None
    next_follow_up_at: datetime | None
    lifecycle: str
    value_tier: str
    activity: str
    rfm: RFM
    cooperation_status: str
    first_cooperation_date: date | None
    last_cooperation_date: date | None
    products: list[str]
    contract_amount: str | None
    flags: list[str]
    tags: list[TagRef]
    custom: dict[str, Any]
    id_number: str | None = Field(description="Always masked; reveal through /reveal.")
    bank_account: str | None = Field(description="Always masked; reveal through /reveal.")
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None
    deleted_at: datetime | None = None


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    next_cursor: str | None


SortKey = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "name",
    "-name",
    "code",
    "-code",
    "contract_amount",
    "-contract_amount",
    "last_follow_up_at",
    "-last_follow_up_at",
    "next_follow_up_at",
    "-next_follow_up_at",
    "relevance",
]


# Filter complexity is bounded: a list filter takes at most this many values.
MAX_FILTER_VALUES = 50
OwnerRef = Annotated[str, Field(pattern=r"^(me|none|[0-9]{1,18})$")]
ShortValue = Annotated[str, Field(min_length=1, max_length=60)]


class CustomerFilter(BaseModel):
    """The customer list's filter language; saved segments store exactly this."""

    model_config = ConfigDict(extra="forbid")

    q: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    owner: Annotated[list[OwnerRef], Field(max_length=MAX_FILTER_VALUES)] = Field(
        default=[], description="User ids, `me`, or `none` (the shared pool)."
    )
    tier: Annotated[list[ValueTier], Field(max_length=MAX_FILTER_VALUES)] = []
    lifecycle: Annotated[list[Lifecycle], Field(max_length=MAX_FILTER_VALUES)] = []
    status: Annotated[list[CooperationStatus], Field(max_length=MAX_FILTER_VALUES)] = []
    source: Annotated[list[ShortValue], Field(max_length=MAX_FILTER_VALUES)] = []
    industry: Annotated[list[ShortValue], Field(max_length=MAX_FILTER_VALUES)] = Field(
        default=[], description="Division codes or section letters."
    )
    region: Annotated[list[ShortValue], Field(max_length=MAX_FILTER_VALUES)] = Field(
        default=[], description="Province or city."
    )
    kind: Annotated[list[Kind], Field(max_length=2)] = []
    flag: Annotated[list[Flag], Field(max_length=MAX_FILTER_VALUES)] = []
    tag: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=40)]], Field(max_length=50)
    ] = Field(default=[], description="Tag ids or names (a name matches in every category).")
    tag_mode: Literal["any", "all"] = Field(
        default="any", description="`any`: at least one of `tag`; `all`: every one of them."
    )
    stale_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    id_number: Annotated[str, Field(max_length=40)] | None = Field(
        default=None, description="Exact match through the blind index."
    )
    bank_account: Annotated[str, Field(max_length=50)] | None = None
    created_from: AwareDatetime | date | None = None
    created_to: AwareDatetime | date | None = None
    custom: Annotated[dict[str, ShortValue], Field(max_length=10)] = Field(
        default={},
        description="custom.<key>=value; for number and date fields also "
        "custom.<key>.gte / custom.<key>.lte",
    )
