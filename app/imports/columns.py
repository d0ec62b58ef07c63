"""The sheet columns of a customer: API field name, Chinese template header, other names seen in
legacy sheets. Import reads these headers and export writes them, so a file goes round trip."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    field: str
    zh: str
    aliases: tuple[str, ...] = ()
    enum: str | None = None  # exported as its Chinese label under headers=zh
    importable: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("code", "客户编号", ("编号", "客户代码", "客户id")),
    Column(
        "name",
        "客户名称",
        (
            "公司名称",
            "企业名称",
            "客户姓名",
            "姓名",
            "名称",
            "单位名称",
            "customer_name",
            "company",
        ),
    ),
    Column("kind", "客户类别", ("客户性质", "客户种类"), enum="kind"),
    Column("contacts", "联系人", ("联系人姓名", "联系人员", "contact", "contact_name")),
    Column(
        "phone",
        "联系方式",
        ("联系电话", "电话", "手机", "手机号", "手机号码", "电话号码", "mobile", "tel"),
    ),
    Column("raw_phone", "原始电话"),
    Column("email", "电子邮箱", ("邮箱", "电子邮件", "e-mail", "mail")),
    Column("industry", "所属行业", ("行业", "行业分类")),
    Column("province", "省份", ("省", "所在省份")),
    Column("city", "城市", ("市", "所在城市")),
    Column("address", "地址", ("详细地址", "公司地址", "联系地址")),
    Column("source", "客户来源", ("来源", "来源渠道", "获客渠道", "渠道")),
    Column("referrer", "推荐人", ("介绍人",)),
    Column("first_contact_at", "首次接触时间", ("首次联系时间", "首次接触日期")),
    Column("core_needs", "核心需求", ("需求", "客户需求", "需求描述")),
    Column("need_tags", "客户标签", ("标签", "需求标签", "tags")),
    Column("budget", "预算", ("客户预算", "预算金额")),
    Column("need_priority", "需求优先级", ("优先级",), enum="need_priority"),
    Column("decision_makers", "决策人", ("决策者", "关键决策人")),
    Column(
        "employee_band", "客户规模", ("企业规模", "员工规模", "人员规模", "规模"), "employee_band"
    ),
    Column("revenue_band", "年营收", ("营收规模", "年营业额", "年收入"), enum="revenue_band"),
    Column("gender", "性别", enum="gender"),
    Column("age_band", "年龄段", ("年龄",), enum="age_band"),
    Column("occupation", "职业"),
    Column("price_sensitivity", "价格敏感度", enum="price_sensitivity"),
    Column("consumption_habits", "消费习惯"),
    Column("owner", "跟进人", ("负责人", "跟进销售", "客户经理", "销售代表", "owner_email")),
    Column("last_follow_up_at", "最近跟进日期", ("最近跟进时间", "最后跟进日期", "跟进日期")),
    Column("next_follow_up_at", "下次跟进日期", ("下次跟进时间",)),
    Column("lifecycle", "客户类型", ("客户阶段", "客户分类"), enum="lifecycle"),
    Column("cooperation_status", "合作状态", ("合作情况",), enum="cooperation_status"),
    Column("first_cooperation_date", "首次合作日期"),
    Column("last_cooperation_date", "最近合作日期"),
    Column("products", "合作产品", ("产品", "合作产品/服务", "购买产品")),
    Column("contract_amount", "合同金额", ("金额", "成交金额", "合同额")),
    Column("value_tier", "价值分层", enum="value_tier", importable=False),
    Column("activity", "活跃度", enum="activity", importable=False),
    Column("flags", "数据标记", enum="flag", importable=False),
    Column("created_at", "创建时间", importable=False),
    Column("updated_at", "更新时间", importable=False),
)

BY_FIELD = {c.field: c for c in COLUMNS}

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(text: str) -> str:
    """Make a cell inert in a spreadsheet: a leading apostrophe keeps it text."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def unescape(text: str) -> str:
    """Undo `escape_cell` on import."""
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_PREFIXES:
        return text[1:]
    return text


# Template headers often carry a required marker or a unit: 客户名称*, 合同金额(元).
_DECORATION = re.compile(r"[*＊]|[(（][^)）]*[)）]$")


def header_key(text: str) -> str:
    """Compare headers ignoring width, case, spaces, required markers and units."""
    text = unicodedata.normalize("NFKC", text).replace("\ufeff", "").strip()
    text = _DECORATION.sub("", text)
    return re.sub(r"\s+", "", text).lower()


def _index() -> dict[str, str]:
    out: dict[str, str] = {}
    for col in COLUMNS:
        if not col.importable:
            continue
        for name in (col.field, col.zh, *col.aliases):
            out.setdefault(header_key(name), col.field)
    return out


HEADER_INDEX = _index()
# Columns our own export writes that an import leaves alone (computed by the service).
READ_ONLY = {header_key(n) for c in COLUMNS if not c.importable for n in (c.field, c.zh)}
