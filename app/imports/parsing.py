"""Turning one sheet row into a customer record, forgivingly (SPEC §9, §10).

Every rule is the customer feature's own (enums, industries, phones, sources, custom fields,
flags, search text); this module only reads the many ways legacy sheets write values: Chinese
dates, amounts with units, tag lists, values of one enum found in another enum's column.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import TypeAdapter, ValidationError

from app.core.errors import ValidationFailed
from app.customers import enums
from app.customers import service as customer_service
from app.customers.industries import resolve_industry
from app.customers.normalize import normalize_phone
from app.customers.repository import FieldDef, SourceDef
from app.customers.schemas import Contact, CustomerCreate
from app.imports.columns import HEADER_INDEX, READ_ONLY, header_key, unescape

ERROR, WARNING = "error", "warning"

# Validators of the customer write schema, one per field, so an import checks exactly what the
# API checks (lengths, money precision, email syntax) and can blame the right column.
_FIELDS = CustomerCreate.model_fields


def _adapter(annotation: Any, metadata: list[Any]) -> TypeAdapter[Any]:
    if metadata:
        return TypeAdapter(Annotated[annotation, *metadata])
    return TypeAdapter(annotation)


ADAPTERS = {name: _adapter(info.annotation, info.metadata) for name, info in _FIELDS.items()}
_CONTACTS = TypeAdapter(list[Contact])

TEXT_FIELDS = (
    "name",
    "address",
    "occupation",
    "consumption_habits",
    "referrer",
    "core_needs",
    "decision_makers",
)
ENUM_FIELDS = (
    "kind",
    "lifecycle",
    "cooperation_status",
    "need_priority",
    "employee_band",
    "revenue_band",
    "gender",
    "age_band",
    "price_sensitivity",
)
# Enums that legacy sheets mix up with each other: a 合作状态 column holding 潜在客户.
MIXED_ENUMS = ("lifecycle", "cooperation_status", "kind")
SCALE_ENUMS = ("employee_band", "revenue_band")
DATETIME_FIELDS = ("first_contact_at", "last_follow_up_at", "next_follow_up_at")
DATE_FIELDS = ("first_cooperation_date", "last_cooperation_date")
LIST_FIELDS = ("need_tags", "products")
MONEY_FIELDS = ("budget", "contract_amount")

_TAG_SPLIT = re.compile(r"[、，,;；]")
_NAME_SPLIT = re.compile(r"[、，,;；/]")
_PHONE_SPLIT = re.compile(r"[、，,;；/]|\s{2,}")
_CODE = re.compile(r"^C\d{11,}$")
_YMD = re.compile(
    r"^(\d{4})\s*[年/.\-]\s*(\d{1,2})\s*[月/.\-]\s*(\d{1,2})\s*[日号]?"
    r"(?:[\sT]*(\d{1,2})\s*[:：时点]\s*(\d{1,2})?\s*(?:[:：分]\s*(\d{1,2})\s*秒?)?)?$"
)
_MDY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SERIAL = re.compile(r"^\d{5}(?:\.\d+)?$")
_HEADCOUNT = re.compile(r"^(\d+)\s*人?$")
_MONEY_NOISE = re.compile(r"[,，\s¥￥]|元$|人民币|rmb|cny", re.IGNORECASE)
_TRUE = {"true", "1", "yes", "y", "是", "有", "√", "对"}
_FALSE = {"false", "0", "no", "n", "否", "无", "×", "错"}


@dataclass(slots=True)
class Issue:
    row_no: int | None
    column: str | None
    value: str | None
    reason: str
    level: str = WARNING


@dataclass(slots=True)
class Parsed:
    """A row's values (only those the row gave), its flags and its problems."""

    row_no: int
    values: dict[str, Any]
    flags: set[str]
    issues: list[Issue]
    code: str | None = None  # a customer code written in the sheet
    ok: bool = True
    strays: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # the values as a new customer
    words: str | None = None  # its search text, before a code is known
    cells: list[Any] | None = None  # the record's write values (WRITE_COLUMNS), when built


@dataclass
class ImportContext:
    """What rows are read against: lookups loaded once per job."""

    sources: list[SourceDef]
    custom_fields: list[FieldDef]
    users_by_email: dict[str, int]
    users_by_name: dict[str, int | None]  # None: two users share this display name
    timezone: str
    _cache: dict[tuple[str, str], tuple[Any, str | None]] = field(default_factory=dict)

    def memo(self, kind: str, text: str, compute: Any) -> tuple[Any, str | None]:
        key = (kind, text)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            hit = self._cache[key] = compute(text)
        return hit


# ---- headers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mapping:
    """Column index → field (`custom.<key>` for custom fields); unknown headers listed once."""

    fields: dict[int, str]
    unknown: list[str]
    headers: list[str]


def map_headers(headers: list[str], custom_fields: list[FieldDef]) -> Mapping:
    custom: dict[str, str] = {}
    for f in custom_fields:
        for name in (f.key, f"custom.{f.key}", f.label):
            custom.setdefault(header_key(name), f"custom.{f.key}")
    fields: dict[int, str] = {}
    unknown: list[str] = []
    taken: set[str] = set()
    for i, raw in enumerate(headers):
        text = unescape(str(raw or "")).strip()
        if not text:
            continue
        key = header_key(text)
        target = HEADER_INDEX.get(key) or custom.get(key)
        if target is None and key in READ_ONLY:
            continue
        if target is None or target in taken:
            unknown.append(text)
            continue
        taken.add(target)
        fields[i] = target
    return Mapping(fields=fields, unknown=unknown, headers=[str(h or "") for h in headers])


# ---- single values ---------------------------------------------------------------------------


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # phones and codes typed into Excel number cells
    if isinstance(value, datetime | date):
        return value.isoformat()
    return unescape(str(value).strip()).strip()


def parse_date(text: str) -> date | datetime | None:
    """2026年11月22日, 2026/11/22, 2026-11-22 10:30, 2026.11.22, 11/22/2026, 20261122, ISO
    datetimes, and Excel day serials; None when it is none of them."""
    text = text.strip()
    m = _YMD.match(text)
    try:
        if m:
            y, mo, d, hh, mm, ss = m.groups()
            if hh is None:
                return date(int(y), int(mo), int(d))
            return datetime(int(y), int(mo), int(d), int(hh), int(mm or 0), int(ss or 0))
        m = _MDY.match(text)
        if m:
            a, b, y = (int(g) for g in m.groups())
            month, day = (a, b) if a <= 12 else (b, a)  # 22/11/2026 can only be day-first
            return date(y, month, day)
        m = _COMPACT.match(text)
        if m:
            return date(*(int(g) for g in m.groups()))
        if _SERIAL.match(text) and 20_000 <= float(text) <= 80_000:
            return date(1899, 12, 30) + timedelta(days=int(float(text)))
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def parse_amount(text: str) -> Decimal | None:
    """120,000.50 / ¥120000 / 12万 / 1.5亿元 → Decimal; None when not a number."""
    cleaned = _MONEY_NOISE.sub("", text)
    factor = Decimal(1)
    for unit, mult in (("万", Decimal(10_000)), ("亿", Decimal(100_000_000))):
        if cleaned.endswith(unit):
            cleaned, factor = cleaned[: -len(unit)], mult
    try:
        number = Decimal(cleaned) * factor
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _employee_band(headcount: int) -> str:
    bands = ((20, "1_19"), (100, "20_99"), (300, "100_299"), (1000, "300_999"))
    return next((band for limit, band in bands if headcount < limit), "1000_plus")


def _parse_bool(text: str) -> bool | str:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return text


def _adapt(name: str, value: Any) -> Any:
    return ADAPTERS[name].validate_python(value)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")


# Plain ASCII addresses (most of any sheet) are checked here; everything else goes through the
# API's own validator (email-validator, ~50 µs). The form is a subset of what that validator
# accepts unchanged but for case: a dot-atom local part, hostname labels of at most 63
# characters, a top-level domain ending in a letter, no `--` label (IDNA), no special-use domain,
# at most 254 characters in all. tests/imports/test_fast_paths.py checks the equivalence.
_EMAIL_FORM = re.compile(
    r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z0-9][A-Za-z0-9\-]{0,61})?[A-Za-z])",
    re.ASCII,
)


def fast_email(text: str) -> str | None:
    """The normalized address of a plain ASCII email, or None when the full check must decide."""
    if len(text) > 254:
        return None
    m = _EMAIL_FORM.fullmatch(text)
    if m is None:
        return None
    domain = m.group(1).lower()
    if len(domain) > 253 or "--" in domain:
        return None
    for special in SPECIAL_USE_DOMAIN_NAMES:
        if domain == special or domain.endswith("." + special):
            return None
    return text.lower()


def parse_email(text: str) -> str:
    """The API's email rule (normalized, lower case); raises ValidationError like it."""
    fast = fast_email(text)
    return fast if fast is not None else str(_adapt("email", text))


@dataclass(frozen=True, slots=True)
class _Effect:
    """What reading one cell did to its row, to replay on rows with the same cell text."""

    values: tuple[tuple[str, Any], ...]
    flags: frozenset[str]
    issues: tuple[tuple[str | None, str | None, str, str], ...]
    strays: tuple[tuple[str, str, str, str, str], ...]


# Cells read the same whatever else the row holds and whatever the row number: their reading
# (value, flags, warnings) is memoized per text. The others are read each time: too many
# distinct values to gain (names, codes, emails, free text), or depending on the row (phones).
_PER_ROW = frozenset({"name", "code", "phone", "raw_phone", "email", *TEXT_FIELDS})
_MEMO_LIMIT = 100_000


# ---- rows ------------------------------------------------------------------------------------


class RowParser:
    def __init__(self, ctx: ImportContext, mapping: Mapping, *, memoize: bool = True) -> None:
        self.ctx = ctx
        self.memoize = memoize
        self.mapping = mapping
        self.tz = ZoneInfo(ctx.timezone)
        self.custom = {f.key: f for f in ctx.custom_fields}
        self.headers = mapping.headers
        self._columns = [(i, target, self.headers[i]) for i, target in mapping.fields.items()]
        self._memo: dict[tuple[str, str], _Effect] = {}

    def parse(self, row_no: int, cells: list[Any]) -> Parsed | None:
        """None for a blank row; otherwise the record with its issues."""
        texts: list[tuple[str, str, str, Any]] = []  # (field, header, text, raw cell)
        count = len(cells)
        for i, target, header in self._columns:
            raw = cells[i] if i < count else None
            if type(raw) is str:  # cell_text, for the common case
                text = raw.strip()
                if text[:1] == "'":
                    text = unescape(text).strip()
            else:
                text = cell_text(raw)
            if text:
                texts.append((target, header, text, raw))
        if not texts:
            return None
        out = Parsed(row_no=row_no, values={}, flags=set(), issues=[])
        for target, header, text, raw in texts:
            if self.memoize and target not in _PER_ROW and type(raw) is str:
                effect = self._memo.get((target, text))
                if effect is None:
                    effect = self._record(target, header, text, raw)
                self._replay(out, effect)
            else:
                self._read(out, target, header, text, raw)
        self._finish(out)
        if "name" not in out.values:
            header = self._header_of("name") or "客户名称"
            if out.ok:
                out.issues.append(Issue(row_no, header, None, "客户名称 (name) is required", ERROR))
            out.ok = False
        return out

    def _read(self, out: Parsed, target: str, header: str, text: str, raw: Any) -> None:
        try:
            self._field(out, target, header, text, raw)
        except ValidationError as exc:
            self._warn(out, header, text, _first_error(exc))
        except ValidationFailed as exc:
            reason = (exc.errors or [{}])[0].get("message", exc.detail_en)
            self._warn(out, header, text, str(reason))

    def _record(self, target: str, header: str, text: str, raw: Any) -> _Effect:
        scratch = Parsed(row_no=0, values={}, flags=set(), issues=[])
        self._read(scratch, target, header, text, raw)
        effect = _Effect(
            values=tuple(scratch.values.items()),
            flags=frozenset(scratch.flags),
            issues=tuple((i.column, i.value, i.reason, i.level) for i in scratch.issues),
            strays=tuple(scratch.strays),
        )
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[(target, text)] = effect
        return effect

    @staticmethod
    def _replay(out: Parsed, effect: _Effect) -> None:
        values = out.values
        for key, value in effect.values:
            if key == "custom":  # one field of the row's custom values
                values.setdefault("custom", {}).update(value)
            elif type(value) is list:
                values[key] = list(value)
            else:
                values[key] = value
        if effect.flags:
            out.flags |= effect.flags
        for column, value, reason, level in effect.issues:
            out.issues.append(Issue(out.row_no, column, value, reason, level))
        if effect.strays:
            out.strays.extend(effect.strays)

    # ---- helpers

    def _header_of(self, target: str) -> str | None:
        for i, t in self.mapping.fields.items():
            if t == target:
                return self.headers[i]
        return None

    def _warn(self, out: Parsed, header: str, text: str, reason: str) -> None:
        out.issues.append(Issue(out.row_no, header, text, reason, WARNING))

    def _field(self, out: Parsed, target: str, header: str, text: str, raw: Any) -> None:
        v = out.values
        if target == "name":
            try:
                v["name"] = _adapt("name", text)
            except ValidationError as exc:
                out.ok = False
                out.issues.append(Issue(out.row_no, header, text, _first_error(exc), ERROR))
        elif target == "code":
            if _CODE.match(text.upper()):
                out.code = text.upper()
            else:
                self._warn(out, header, text, "not a customer code (C + date + number); ignored")
        elif target in ("phone", "raw_phone"):
            self._phone(out, header, text)
        elif target == "email":
            try:
                v["email"] = parse_email(text)
            except ValidationError:
                out.flags.add("to_verify")
                self._warn(out, header, text, "not a valid email address; left out, flagged 待核实")
        elif target == "contacts":
            self._contacts(out, header, text)
        elif target in TEXT_FIELDS or target in ("province", "city"):
            if target in ("province", "city"):
                if len(text) > 40:
                    self._warn(out, header, text, "at most 40 characters")
                else:
                    v[target] = text
            else:
                v[target] = _adapt(target, text)
        elif target == "industry":
            code, reason = self.ctx.memo("industry", text, _industry)
            if code is None:
                self._warn(out, header, text, reason or "unknown industry")
            else:
                v["industry"] = code
        elif target == "source":
            code, _ = self.ctx.memo(
                "source", text, lambda t: (customer_service.match_source(self.ctx.sources, t), None)
            )
            if code is None:
                self._warn(out, header, text, "unknown source channel; left out")
            else:
                v["source"] = code
        elif target in ENUM_FIELDS:
            self._enum(out, target, header, text)
        elif target in DATETIME_FIELDS or target in DATE_FIELDS:
            when = raw if isinstance(raw, datetime | date) else parse_date(text)
            if when is None:
                self._warn(out, header, text, "not a date (e.g. 2026年11月22日 or 2026-11-22)")
            elif target in DATE_FIELDS:
                v[target] = when.date() if isinstance(when, datetime) else when
            else:
                v[target] = self._aware(when)
        elif target in MONEY_FIELDS:
            amount = parse_amount(text)
            if amount is None:
                self._warn(out, header, text, "not an amount")
            else:
                v[target] = _adapt(target, amount)
        elif target in LIST_FIELDS:
            items = [t.strip() for t in _TAG_SPLIT.split(text) if t.strip()]
            v[target] = _adapt(target, list(dict.fromkeys(items)))
        elif target == "owner":
            owner = self._owner(text)
            if owner is None:
                self._warn(out, header, text, "no such user (email or display name); no owner set")
            else:
                v["owner_id"] = owner
        elif target.startswith("custom."):
            key = target.removeprefix("custom.")
            f = self.custom[key]
            value: Any = text
            if f.type == "bool":
                value = _parse_bool(text)
            elif f.type == "date":
                when = raw if isinstance(raw, datetime | date) else parse_date(text)
                value = when.date() if isinstance(when, datetime) else (when or text)
                value = value.isoformat() if isinstance(value, date) else value
            custom = v.setdefault("custom", {})
            custom[key] = customer_service.custom_value(key, f.type, list(f.options), value)

    def _aware(self, when: date | datetime) -> datetime:
        if not isinstance(when, datetime):
            when = datetime(when.year, when.month, when.day)
        return when if when.tzinfo else when.replace(tzinfo=self.tz)

    def _phone(self, out: Parsed, header: str, text: str) -> None:
        e164 = normalize_phone(text)
        extra: list[str] = []
        if e164 is None:
            parts = [p.strip() for p in _PHONE_SPLIT.split(text) if p.strip()]
            valid = [n for n in (normalize_phone(p) for p in parts) if n] if len(parts) > 1 else []
            if valid and len(valid) == len(parts):
                e164, extra = valid[0], valid[1:]
        if e164 is None:
            if "raw_phone" not in out.values:
                out.values["raw_phone"] = text[:100]
            out.flags.add("to_verify")
            self._warn(out, header, text, "phone does not parse; kept as raw_phone, flagged 待核实")
            return
        if "phone" in out.values:
            extra.insert(0, e164)
        else:
            out.values["phone"] = e164
        if extra:
            out.values["extra_phones"] = out.values.get("extra_phones", []) + extra

    def _contacts(self, out: Parsed, header: str, text: str) -> None:
        if text.startswith("["):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, list):
                contacts = _CONTACTS.validate_python(data)
                out.values["contacts"] = [c.model_dump(exclude_unset=True) for c in contacts]
                return
        names = [n.strip() for n in _NAME_SPLIT.split(text) if n.strip()]
        contacts = _CONTACTS.validate_python([{"name": n} for n in names])
        out.values["contacts"] = [c.model_dump(exclude_unset=True) for c in contacts]

    def _enum(self, out: Parsed, target: str, header: str, text: str) -> None:
        v = out.values
        if target in SCALE_ENUMS:
            for enum in SCALE_ENUMS if target == "employee_band" else SCALE_ENUMS[::-1]:
                code = enums.resolve(enum, text)
                if code is not None:
                    v[enum] = code
                    return
            m = _HEADCOUNT.match(text)
            if m and target == "employee_band":
                v["employee_band"] = _employee_band(int(m.group(1)))
                return
            self._warn(out, header, text, f"must be one of: {', '.join(enums.codes(target))}")
            return
        code = enums.resolve(target, text)
        if code is not None:
            v[target] = code
            return
        if target in MIXED_ENUMS:
            found = enums.which_enum(text, tuple(e for e in MIXED_ENUMS if e != target))
            if found is not None:
                # Applied after the row's own columns, which win over a stray value.
                out.strays.append((found[0], found[1], target, header, text))
                return
        self._warn(out, header, text, f"must be one of: {', '.join(enums.codes(target))}")

    def _finish(self, out: Parsed) -> None:
        v = out.values
        for enum, code, target, header, text in out.strays:
            if enum in v:
                self._warn(out, header, text, f"a {enum} value, but {enum} is given; ignored")
            else:
                v[enum] = code
                self._warn(out, header, text, f"a {enum} value, not a {target}; set {enum}")
        extra = v.pop("extra_phones", [])
        if extra:
            contacts = v.get("contacts") or [{"name": v.get("name", "")[:60] or "联系人"}]
            first = dict(contacts[0])
            first["phones"] = list(dict.fromkeys([*first.get("phones", []), *extra]))[:10]
            v["contacts"] = [first, *contacts[1:]]
        if "lifecycle" in v:
            v["lifecycle_baseline"] = v["lifecycle"]

    def _owner(self, text: str) -> int | None:
        low = text.strip().lower()
        if low in self.ctx.users_by_email:
            return self.ctx.users_by_email[low]
        return self.ctx.users_by_name.get(text.strip())


def _industry(text: str) -> tuple[str | None, str | None]:
    code = resolve_industry(text)
    if code is None:
        return None, "unknown or ambiguous industry; use a GB/T 4754-2017 name or code"
    return code, None


def build_record(parsed: Parsed) -> dict[str, Any]:
    """The values of a new customer from a parsed row (the API's create defaults applied)."""
    values = dict(parsed.values)
    customer_service.fill_create_defaults(values)
    # COPY writes NULL where the API's INSERT would get the column default.
    values.setdefault("lifecycle", "potential")
    values.setdefault("cooperation_status", "not_started")
    values.setdefault("need_tags", [])
    values.setdefault("products", [])
    values.setdefault("custom", {})
    values["flags"] = customer_service.compute_flags(values, sorted(parsed.flags))
    return values
