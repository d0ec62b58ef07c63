"""Reading legacy values: dates, amounts, headers, encodings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from app.imports.columns import escape_cell, header_key, unescape
from app.imports.parsing import map_headers, parse_amount, parse_date
from app.imports.reader import detect_encoding


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026年11月22日", date(2026, 11, 22)),
        ("2026年1月2日", date(2026, 1, 2)),
        ("2026/11/22", date(2026, 11, 22)),
        ("2026-11-22", date(2026, 11, 22)),
        ("2026.11.22", date(2026, 11, 22)),
        ("11/22/2026", date(2026, 11, 22)),
        ("22/11/2026", date(2026, 11, 22)),
        ("20261122", date(2026, 11, 22)),
        ("46348", date(2026, 11, 22)),  # an Excel day serial
        ("2026年11月22日 14:30", datetime(2026, 11, 22, 14, 30)),
        ("2026-11-22 09:05:07", datetime(2026, 11, 22, 9, 5, 7)),
        ("2026-11-22T10:00:00+08:00", datetime.fromisoformat("2026-11-22T10:00:00+08:00")),
        ("下周", None),
        ("2026年13月40日", None),
    ],
)
def test_dates(text: str, expected: date | datetime | None):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("120,000.50", Decimal("120000.50")),
        ("¥120000", Decimal("120000")),
        ("12万", Decimal("120000")),
        ("1.5亿元", Decimal("150000000.0")),
        ("3000元", Decimal("3000")),
        ("面议", None),
    ],
)
def test_amounts(text: str, expected: Decimal | None):
    assert parse_amount(text) == expected


def test_headers_match_template_api_names_and_decorations():
    mapping = map_headers(
        ["客户名称*", "合同金额(元)", "ＥＭＡＩＬ", "contract_amount", "备注", "  联系 方式 "], []
    )
    assert mapping.fields == {0: "name", 1: "contract_amount", 2: "email", 5: "phone"}
    assert mapping.unknown == ["contract_amount", "备注"]  # a second amount column is not used
    assert header_key("﻿客户编号") == "客户编号"


def test_encoding_detection():
    text = "客户名称,联系方式\n华南制造,13800000000\n"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(text.encode("gbk")) == "gb18030"
    # A sample cut inside a multi-byte character is still UTF-8.
    assert detect_encoding(text.encode("utf-8")[:-12]) == "utf-8"


@pytest.mark.parametrize("cell", ["=1+1", "+86138", "-5", "@SUM(A1)", "\tx", "\rx"])
def test_formula_escape_round_trip(cell: str):
    escaped = escape_cell(cell)
    assert escaped == "'" + cell
    assert unescape(escaped) == cell
    assert escape_cell("华南") == "华南" and unescape("'plain") == "'plain"
