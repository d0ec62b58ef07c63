"""Property tests for the input parsers: any input gives a clean answer, never a crash."""

from __future__ import annotations

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.customers.normalize import mask_phone, normalize_phone, pinyin_forms, query_forms
from app.customers.schemas import CustomerFilter
from app.identity.names import name_key

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

mainland_mobiles = st.builds(
    lambda prefix, rest: f"1{prefix}{rest:08d}",
    st.sampled_from(["30", "38", "39", "50", "58", "66", "77", "86", "88", "99"]),
    st.integers(0, 99_999_999),
)
separators = st.sampled_from(["", " ", "-", "  "])


@FAST
@given(st.text(max_size=40))
def test_normalize_phone_total(raw: str):
    result = normalize_phone(raw)
    if result is not None:
        assert result.startswith("+") and result[1:].isdigit()
        assert normalize_phone(result) == result


@FAST
@given(mainland_mobiles, separators, st.booleans())
def test_mobile_formats_agree(number: str, sep: str, with_country: bool):
    typed = sep.join([number[:3], number[3:7], number[7:]])
    if with_country:
        typed = "+86 " + typed
    e164 = normalize_phone(typed)
    assert e164 == "+86" + number
    assert phonenumbers.is_valid_number(phonenumbers.parse(e164))
    masked = mask_phone(e164)
    assert masked == number[:3] + "****" + number[-4:]


@FAST
@given(st.text(max_size=60))
def test_name_key_and_pinyin_total(name: str):
    key = name_key(name)
    assert name_key(key) == key or len(key) <= 2
    full, initials = pinyin_forms(name)
    assert full == full.lower() and initials == initials.lower()


@FAST
@given(st.text(min_size=1, max_size=100))
def test_query_forms_total(q: str):
    text, digits = query_forms(q)
    assert text == q.strip().lower()
    assert digits is None or digits.isdigit()


filter_values = st.lists(st.text(max_size=70), max_size=60)


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "owner": filter_values,
            "tier": filter_values,
            "status": filter_values,
            "industry": filter_values,
            "stale_days": st.one_of(st.integers(), st.text(max_size=5)),
            "created_from": st.text(max_size=30),
            "custom": st.dictionaries(st.text(max_size=20), st.text(max_size=70), max_size=12),
            "tag_mode": st.text(max_size=5),
            "unknown": st.text(max_size=5),
        },
    )
)
def test_filter_parser_accepts_or_rejects_cleanly(data: dict[str, object]):
    try:
        parsed = CustomerFilter.model_validate(data)
    except ValidationError:
        return
    assert len(parsed.owner) <= 50 and len(parsed.custom) <= 10
    for owner in parsed.owner:
        assert owner in {"me", "none"} or owner.isdigit()
