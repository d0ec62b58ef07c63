"""Customer, interaction and segment enums: English snake_case codes with Chinese labels,
served by /meta/enums.

Inputs accept the code or its Chinese label (and listed aliases), so 潜在客户 and `potential`
are the same value to the API and the importer.
"""

from __future__ import annotations

from typing import Any

ENUMS: dict[str, dict[str, str]] = {
    "kind": {"enterprise": "企业客户", "individual": "个人客户"},
    "gender": {"male": "男", "female": "女", "other": "其他"},
    "age_band": {
        "under_18": "18岁以下",
        "18_24": "18-24岁",
        "25_34": "25-34岁",
        "35_44": "35-44岁",
        "45_54": "45-54岁",
        "55_64": "55-64岁",
        "65_plus": "65岁及以上",
    },
    "employee_band": {
        "1_19": "20人以下",
        "20_99": "20-99人",
        "100_299": "100-299人",
        "300_999": "300-999人",
        "1000_plus": "1000人及以上",
    },
    "revenue_band": {
        "under_1m": "100万元以下",
        "1m_10m": "100万-1000万元",
        "10m_100m": "1000万-1亿元",
        "100m_1b": "1亿-10亿元",
        "1b_plus": "10亿元以上",
    },
    "price_sensitivity": {"high": "高", "medium": "中", "low": "低"},
    "need_priority": {
        "urgent_important": "重要且紧急",
        "important_not_urgent": "重要不紧急",
        "urgent_not_important": "紧急不重要",
        "not_urgent_not_important": "不重要不紧急",
    },
    "decision_role": {
        "decision_maker": "决策者",
        "influencer": "影响者",
        "user": "使用者",
        "purchaser": "采购者",
        "gatekeeper": "把关者",
        "other": "其他",
    },
    "cooperation_status": {
        "not_started": "未合作",
        "active": "合作中",
        "paused": "暂停合作",
        "terminated": "终止合作",
    },
    "lifecycle": {
        "potential": "潜在客户",
        "new": "新客户",
        "existing": "老客户",
        "churned": "流失客户",
    },
    "value_tier": {
        "high_value": "高价值客户",
        "potential": "潜力客户",
        "normal": "普通客户",
        "churn_risk": "流失风险客户",
    },
    "activity": {"active": "活跃", "dormant": "沉睡", "lost": "流失"},
    "flag": {
        "to_verify": "待核实",
        "to_complete": "待补充",
        "no_marketing": "已撤回营销同意",
        "erasure_due": "待删除（超过保存期限）",
    },
    "consent_purpose": {
        "marketing": "营销推广",
        "sensitive_data": "敏感个人信息处理",
        "data_sharing": "向第三方提供",
        "profiling": "画像与自动化决策",
        "service": "履约与服务",
    },
    "custom_field_type": {
        "text": "文本",
        "number": "数字",
        "date": "日期",
        "enum": "选项",
        "bool": "是/否",
    },
    # Interactions, tasks and segmentation (SPEC §3, §4).
    "channel": {
        "phone": "电话",
        "visit": "拜访",
        "website_form": "官网表单",
        "wechat": "微信",
        "chat": "在线沟通",
        "email": "邮件",
        "store": "门店",
        "exhibition": "展会",
        "other": "其他",
    },
    "interaction_kind": {
        "inquiry": "咨询",
        "follow_up": "跟进",
        "meeting": "会面",
        "quote": "报价",
        "purchase": "成交",
        "complaint": "投诉",
        "service": "服务",
        "feedback": "反馈",
    },
    "direction": {"inbound": "客户来访/来电", "outbound": "我方主动联系"},
    "sentiment": {"positive": "积极", "hesitant": "犹豫", "dissatisfied": "不满"},
    "task_status": {"open": "待办", "done": "已完成", "cancelled": "已取消"},
    "rfm_segment": {
        "champions": "重要价值客户",
        "loyal": "忠诚客户",
        "potential_loyalists": "潜在忠诚客户",
        "new_customers": "新近成交客户",
        "promising": "有潜力客户",
        "need_attention": "需要关注客户",
        "about_to_sleep": "即将沉睡客户",
        "at_risk": "流失风险客户",
        "cant_lose": "重要挽留客户",
        "hibernating": "沉睡客户",
        "no_purchase": "未成交客户",
    },
    "role": {
        "admin": "系统管理员",
        "manager": "销售经理",
        "sales": "销售代表",
        "service": "客服",
        "marketing": "市场",
        "data_admin": "数据管理员",
    },
}

# Other words people write for the same value (import sheets, free text).
ALIASES: dict[str, dict[str, str]] = {
    "kind": {"企业": "enterprise", "b2b": "enterprise", "个人": "individual", "b2c": "individual"},
    "cooperation_status": {
        "合作": "active",
        "已合作": "active",
        "暂停": "paused",
        "终止": "terminated",
        "未开始": "not_started",
    },
    "lifecycle": {
        "潜在": "potential",
        "新": "new",
        "老": "existing",
        "流失": "churned",
        "老客": "existing",
        "新客": "new",
    },
    "gender": {"m": "male", "f": "female", "男性": "male", "女性": "female"},
    "channel": {
        "电话沟通": "phone",
        "上门拜访": "visit",
        "微信沟通": "wechat",
        "官网": "website_form",
    },
    "interaction_kind": {
        "询价": "inquiry",
        "回访": "follow_up",
        "会议": "meeting",
        "购买": "purchase",
        "成交订单": "purchase",
        "售后": "service",
    },
    "direction": {"呼入": "inbound", "呼出": "outbound", "in": "inbound", "out": "outbound"},
    "price_sensitivity": {"高敏感": "high", "中敏感": "medium", "低敏感": "low"},
}

# The default source channels; admins add more (stored in source_channels).
DEFAULT_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "exhibition": ("展会", ()),
    "referral": ("转介绍", ("介绍", "老客户介绍")),
    "online_ads": ("线上推广", ("线上广告", "网络推广", "广告")),
    "cold_visit": ("陌生拜访", ("地推", "上门拜访")),
    "website_form": ("官网表单", ("官网", "网站表单")),
    "phone_inquiry": ("电话咨询", ("来电", "电话")),
    "wechat": ("公众号/微信", ("公众号", "微信")),
    "store": ("线下门店", ("门店",)),
    "event": ("行业沙龙/活动", ("行业沙龙", "活动", "沙龙")),
    "whitepaper": ("白皮书留资", ("白皮书",)),
    "third_party": ("第三方渠道", ("第三方",)),
    "other": ("其他", ()),
}


def _key(text: str) -> str:
    return text.strip().lower().replace(" ", "").replace("-", "_")


def _index() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, values in ENUMS.items():
        idx = {_key(code): code for code in values}
        idx.update({_key(label): code for code, label in values.items()})
        idx.update({_key(alias): code for alias, code in ALIASES.get(name, {}).items()})
        out[name] = idx
    return out


_INDEX = _index()


def resolve(enum: str, value: str) -> str | None:
    """The code for a code, label or alias of `enum`; None when it is none of them."""
    return _INDEX[enum].get(_key(value))


def which_enum(value: str, candidates: tuple[str, ...]) -> tuple[str, str] | None:
    """Find the enum among `candidates` a stray value belongs to (for mixed-up columns)."""
    for enum in candidates:
        code = resolve(enum, value)
        if code is not None:
            return enum, code
    return None


def codes(enum: str) -> list[str]:
    return list(ENUMS[enum])


def served() -> dict[str, Any]:
    return {
        name: [{"code": code, "label": label} for code, label in values.items()]
        for name, values in ENUMS.items()
    }
