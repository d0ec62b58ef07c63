"""Normalized name keys for duplicate detection: legal suffixes, (中国), punctuation, width."""

from __future__ import annotations

import re
import unicodedata

# Longest first, so 股份有限公司 is removed whole rather than leaving 股份.
LEGAL_SUFFIXES = sorted(
    [
        "股份有限公司",
        "有限责任公司",
        "集团有限公司",
        "集团股份有限公司",
        "有限公司",
        "股份公司",
        "分公司",
        "公司",
        "co.,ltd.",
        "co.,ltd",
        "co.ltd",
        "coltd",
        "limited",
        "ltd",
        "inc",
        "corp",
        "corporation",
        "llc",
        "gmbh",
    ],
    key=len,
    reverse=True,
)
_REGION_MARKERS = re.compile(r"\((中国|china)\)")
_PUNCT = re.compile(r"[\s\.,，。·・\-_/\\'\"“”‘’()（）\[\]【】&+]+")


def name_key(name: str) -> str:
    """'北京某某科技有限公司' and '北京某某科技（中国）有限公司' both give '北京某某科技'."""
    # NFKC again after lower(): case folding can leave decomposed characters behind.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).lower()).strip()
    text = _REGION_MARKERS.sub("", text)
    # Removing spaces can bring a combining mark next to a letter: compose again.
    compact = unicodedata.normalize("NFKC", _PUNCT.sub("", text))
    changed = True
    while changed and compact:
        changed = False
        for suffix in LEGAL_SUFFIXES:
            bare = suffix.replace(".", "").replace(",", "")
            if compact.endswith(bare) and len(compact) > len(bare) + 1:
                compact = compact[: -len(bare)]
                changed = True
                break
    return compact
