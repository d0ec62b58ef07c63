"""The most frequent words in complaint and feedback texts: jieba word segmentation, stop words
and noise removed, counted once per text.

Only words that several customers use are reported, so a theme list never carries one
customer's name, phone number or other details; anything with a digit is dropped for the same
reason. jieba loads its dictionary (about a second) on first use, in a worker thread.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Function words, pronouns, auxiliaries and fillers of everyday Chinese, then the words every
# CRM note uses whatever it is about; a theme is what is left.
STOP_WORDS = frozenset(
    [
        "的",
        "了",
        "和",
        "是",
        "在",
        "有",
        "我",
        "你",
        "他",
        "她",
        "它",
        "们",
        "我们",
        "你们",
        "他们",
        "她们",
        "它们",
        "咱们",
        "这",
        "那",
        "这个",
        "那个",
        "这些",
        "那些",
        "这样",
        "那样",
        "这里",
        "那里",
        "这边",
        "那边",
        "这次",
        "那次",
        "这种",
        "那种",
        "哪",
        "哪个",
        "哪些",
        "哪里",
        "什么",
        "怎么",
        "怎么样",
        "怎样",
        "为什么",
        "如何",
        "多少",
        "几",
        "个",
        "就",
        "也",
        "都",
        "还",
        "又",
        "再",
        "才",
        "只",
        "很",
        "太",
        "更",
        "最",
        "非常",
        "比较",
        "特别",
        "十分",
        "挺",
        "真",
        "真的",
        "不",
        "没",
        "没有",
        "别",
        "不要",
        "不是",
        "不能",
        "不会",
        "不用",
        "不过",
        "不太",
        "能",
        "会",
        "要",
        "想",
        "可以",
        "可能",
        "应该",
        "需要",
        "必须",
        "得",
        "可",
        "让",
        "把",
        "被",
        "给",
        "对",
        "对于",
        "关于",
        "向",
        "从",
        "自",
        "到",
        "往",
        "在于",
        "由",
        "由于",
        "因为",
        "所以",
        "因此",
        "但",
        "但是",
        "可是",
        "而",
        "而且",
        "并",
        "并且",
        "或",
        "或者",
        "还是",
        "如果",
        "要是",
        "虽然",
        "即使",
        "然后",
        "然而",
        "于是",
        "接着",
        "以及",
        "及",
        "与",
        "跟",
        "同",
        "等",
        "等等",
        "之",
        "其",
        "其中",
        "其他",
        "其它",
        "另外",
        "此外",
        "另",
        "每",
        "各",
        "某",
        "某某",
        "该",
        "本",
        "上",
        "下",
        "中",
        "里",
        "内",
        "外",
        "前",
        "后",
        "时",
        "时候",
        "已经",
        "已",
        "曾经",
        "正在",
        "刚",
        "刚刚",
        "马上",
        "立即",
        "一直",
        "一起",
        "一下",
        "一点",
        "一些",
        "一样",
        "一般",
        "一定",
        "一个",
        "一次",
        "现在",
        "目前",
        "今天",
        "昨天",
        "明天",
        "今年",
        "去年",
        "本周",
        "上周",
        "下周",
        "本月",
        "上月",
        "下月",
        "最近",
        "之前",
        "之后",
        "以后",
        "以前",
        "当时",
        "当前",
        "期间",
        "同时",
        "以上",
        "以下",
        "左右",
        "之间",
        "方面",
        "问题",
        "情况",
        "事情",
        "东西",
        "方式",
        "部分",
        "所有",
        "全部",
        "说",
        "讲",
        "问",
        "告诉",
        "表示",
        "认为",
        "觉得",
        "感觉",
        "希望",
        "看",
        "看到",
        "知道",
        "了解",
        "进行",
        "处理",
        "做",
        "做到",
        "弄",
        "搞",
        "用",
        "使用",
        "啊",
        "呢",
        "吧",
        "吗",
        "嘛",
        "呀",
        "哦",
        "哈",
        "嗯",
        "哎",
        "喔",
        "呃",
        "么",
        "着",
        "过",
        "地",
        "所",
        "为",
        "以",
        "于",
        "则",
        "即",
        "乃",
        "且",
        "若",
        "之类",
        "客户",
        "用户",
        "顾客",
        "公司",
        "我司",
        "贵司",
        "对方",
        "本人",
        "先生",
        "女士",
        "小姐",
        "老师",
        "经理",
        "总",
        "负责人",
        "联系人",
        "同事",
        "反馈",
        "投诉",
        "建议",
        "意见",
        "沟通",
        "联系",
        "电话",
        "微信",
        "邮件",
        "回复",
        "回访",
        "跟进",
        "咨询",
        "来电",
        "致电",
        "表达",
        "提出",
        "提到",
        "com",
        "cn",
        "net",
        "www",
        "http",
        "https",
        "the",
        "and",
        "for",
    ]
)

_WORD = re.compile(r"^(?:[\u4e00-\u9fff]{2,}|[a-z]{2,})$")
_lock = threading.Lock()
_tokenizer: Any = None


def _jieba() -> Any:
    """jieba, initialised once per process (thread-safe, off the event loop)."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _tokenizer = jieba
    return _tokenizer


def words(text: str) -> set[str]:
    """The distinct theme words of one text."""
    out = set()
    for token in _jieba().lcut(text.lower()):
        token = token.strip()
        if token and token not in STOP_WORDS and _WORD.match(token):
            out.add(token)
    return out


@dataclass(frozen=True, slots=True)
class ThemeCount:
    word: str
    mentions: int
    customers: int


def top_themes(
    texts: Iterable[tuple[int, str]], *, top: int, min_customers: int
) -> tuple[int, list[ThemeCount]]:
    """(number of texts, the `top` words by texts using them) over (customer id, text) pairs;
    ties go to the word more customers use, then to the word itself."""
    mentions: Counter[str] = Counter()
    users: dict[str, set[int]] = {}
    count = 0
    for customer_id, text in texts:
        count += 1
        for word in words(text):
            mentions[word] += 1
            users.setdefault(word, set()).add(customer_id)
    ranked = sorted(
        (
            ThemeCount(word, n, len(users[word]))
            for word, n in mentions.items()
            if len(users[word]) >= min_customers
        ),
        key=lambda t: (-t.mentions, -t.customers, t.word),
    )
    return count, ranked[:top]
