"""The import's fast paths give exactly what the rules they shortcut give: phones (against
phonenumbers' parser), emails (against the API's validator), pinyin (against pypinyin's phrase
segmentation) and memoized cell readings (against reading every cell)."""

from __future__ import annotations

import random
from dataclasses import astuple
from typing import Any

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pypinyin.constants import PHRASES_DICT

from app.customers import normalize
from app.customers.normalize import (
    normalize_phone,
    parse_phone,
    phone_search_digits,
    pinyin_forms,
    segmented_pinyin_forms,
)
from app.imports.parsing import ADAPTERS, ImportContext, RowParser, fast_email, map_headers
from app.imports.parsing import parse_email as import_email
from app.imports.repository import NEW_CUSTOMERS_SQL
from tests.imports.helpers import TEMPLATE

MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- phones ------------------------------------------------------------------------------------


def _same_phone(text: str) -> None:
    expected = parse_phone(text)
    assert normalize_phone(text) == expected, text
    if expected is not None:
        national = str(phonenumbers.parse(text, "CN").national_number)
        assert phone_search_digits(expected) == national


def test_every_mobile_prefix_and_area_code_reads_as_phonenumbers_does():
    rnd = random.Random(8)
    for prefix in range(1000, 2000):
        for _ in range(2):
            d = f"{prefix}{rnd.randrange(10**7):07d}"
            for text in (
                d,
                f"{d[:3]} {d[3:7]} {d[7:]}",
                f"+86{d}",
                f"0086 {d[:3]}-{d[3:7]}-{d[7:]}",
            ):
                _same_phone(text)
    for area in range(10, 1000):
        for length in (7, 8):
            local = f"{rnd.randrange(10**length):0{length}d}"
            for text in (
                f"0{area}{local}",
                f"0{area}-{local}",
                f"0{area} {local[:-4]} {local[-4:]}",
            ):
                _same_phone(text)


def test_the_fast_forms_are_taken():
    # Not an equivalence: that the usual forms skip phonenumbers' parser at all.
    for text in ("13812345678", "+86 138-1234-5678", "0086 13812345678", "0571 8888 6666"):
        assert normalize._fast_e164(text) is not None
    for text in ("138****5678", "12345678901", "+1 650 253 0000"):
        assert normalize._fast_e164(text) is None


separators = st.sampled_from(["", " ", "-", "  ", "/", "."])


@st.composite
def phone_like(draw: Any) -> str:
    prefix = draw(st.sampled_from(["", "+86", "0086", "86", "+86 ", "(+86)", "0", "00", "+", "1"]))
    groups = draw(st.lists(st.text("0123456789", min_size=1, max_size=5), min_size=1, max_size=4))
    seps = [draw(separators) for _ in groups]
    return prefix + "".join(s + g for s, g in zip(seps, groups, strict=True))


@MANY
@given(
    st.one_of(
        phone_like(),
        st.from_regex(normalize._MOBILE_FORM, fullmatch=True),
        st.from_regex(normalize._LANDLINE_FORM, fullmatch=True),
        st.text(max_size=20),
    )
)
def test_any_text_reads_as_phonenumbers_reads_it(text: str):
    _same_phone(text)


# ---- emails ------------------------------------------------------------------------------------


def _api_email(text: str) -> str | None:
    try:
        return str(ADAPTERS["email"].validate_python(text))
    except ValidationError:
        return None


def _same_email(text: str) -> None:
    expected = _api_email(text)
    fast = fast_email(text)
    assert fast is None or fast == expected, text
    try:
        got: str | None = import_email(text)
    except ValidationError:
        got = None
    assert got == expected, text


@pytest.mark.parametrize(
    "text",
    [
        "Zhang@HuaNan.cn",
        "c1@example1.cn",
        "a.b+c%d_e-f@mail.sub.example.com",
        "a..b@x.cn",
        ".a@x.cn",
        "a@x",
        "a@x.123",
        "a@-x.cn",
        "a@x-.cn",
        "a@ab--cd.cn",
        "a@xn--fiqs8s.cn",
        "a@x.local",
        "a@localhost",
        "a@x.test",
        "a@x.invalid",
        "a@" + "x" * 64 + ".cn",
        "a@" + ("x" * 60 + ".") * 5 + "cn",
        "x" * 250 + "@x.cn",
        "张@例子.中国",
        "Name <a@x.cn>",
        "a@x.cn ",
    ],
)
def test_email_examples_read_as_the_api_reads_them(text: str):
    _same_email(text)


@MANY
@given(
    st.one_of(
        st.from_regex(
            r"[A-Za-z0-9_%+.\-]{1,12}@(?:[A-Za-z0-9\-]{1,12}\.){1,3}[A-Za-z0-9\-]{1,8}",
            fullmatch=True,
        ),
        st.emails(),
        st.text(alphabet="ab.-_@+1X", max_size=20),
    )
)
def test_any_email_reads_as_the_api_reads_it(text: str):
    _same_email(text)


# ---- pinyin ------------------------------------------------------------------------------------

PHRASES = sorted(PHRASES_DICT)
COMMON = "北京上海重庆长沙厦门成都银行大学有限公司张王李经理总工华南东方信息科技中国人民和平会计"


def test_every_phrase_and_phrase_pair_reads_as_pypinyin_does():
    for i, phrase in enumerate(PHRASES):
        following = PHRASES[(i * 7919) % len(PHRASES)]
        for text in (phrase, phrase + following, f"{phrase}1号{following}"):
            assert pinyin_forms(text) == segmented_pinyin_forms(text), text


@MANY
@given(
    st.one_of(
        st.lists(
            st.one_of(
                st.sampled_from(PHRASES), st.text(COMMON, max_size=4), st.text("ab 1-", max_size=3)
            ),
            max_size=6,
        ).map("".join),
        st.text(max_size=12),
    )
)
def test_any_text_reads_as_pypinyin_reads_it(text: str):
    assert pinyin_forms(text) == segmented_pinyin_forms(text)


# ---- memoized cells ----------------------------------------------------------------------------


def _parsers() -> tuple[RowParser, RowParser]:
    from app.customers.repository import FieldDef, SourceDef

    ctx = ImportContext(
        sources=[
            SourceDef("exhibition", "展会", [], True),
            SourceDef("referral", "转介绍", [], True),
        ],
        custom_fields=[
            FieldDef("follow_up_summary", "沟通内容摘要", "text", [], False, False),
            FieldDef("next_step", "下一步计划", "text", [], False, False),
        ],
        users_by_email={"rep@example.com": 7},
        users_by_name={"王小明": 7},
        timezone="Asia/Shanghai",
    )
    mapping = map_headers(TEMPLATE, ctx.custom_fields)
    return RowParser(ctx, mapping), RowParser(ctx, mapping, memoize=False)


MEMO, PLAIN = _parsers()
CELL_VALUES = [
    "",
    "深圳市华南智能制造股份有限公司",
    "张经理",
    "138-1234-5678",
    "138****5678",
    "Zhang@HuaNan.cn",
    "not-an-email@",
    "制造业",
    "种茶和卖茶",
    "展会",
    "朋友圈",
    "100-299人",
    "50人",
    "2026年11月22日",
    "11/22/2026",
    "rep@example.com",
    "王小明",
    "老客户",
    "合作中",
    "潜在客户",
    "MES 标准版、数据看板",
    "120,000.50",
    "12万",
    "-5",
    "'=1+1",
    " x ",
]


@MANY
@given(
    st.lists(
        st.lists(
            st.one_of(st.sampled_from(CELL_VALUES), st.text(max_size=8), st.none(), st.integers()),
            max_size=len(TEMPLATE) + 2,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_memoized_readings_equal_reading_every_cell(rows: list[list[Any]]):
    for number, row in enumerate(rows, start=2):
        memoized, plain = MEMO.parse(number, row), PLAIN.parse(number, row)
        assert (memoized is None) == (plain is None)
        if memoized is not None and plain is not None:
            assert astuple(memoized) == astuple(plain)


def test_segmentation_statements_are_read_over_staged_rows():
    # Should the segmentation's statement change shape, imports fall back to classifying after
    # inserting (correct, several times slower): this test says so at merge time.
    assert NEW_CUSTOMERS_SQL is not None
