"""Normalizing phones and emails, masking PII, and building the search text (pinyin included)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import phonenumbers
from pypinyin import Style
from pypinyin.converter import UltimateConverter
from pypinyin.core import Pinyin

DEFAULT_REGION = "CN"
_DIGITS = re.compile(r"\D+")


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """E.164 for a valid number in any usual format (+86 138-1234-5678, 0755 8888 6666)."""
    text = raw.strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164 = str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    # The search text needs the national digits of the number just normalized: keep them, so
    # bulk writes parse each phone once.
    if len(_NATIONAL) > 10_000:
        _NATIONAL.clear()
    _NATIONAL[e164] = str(parsed.national_number)
    return e164


_NATIONAL: dict[str, str] = {}


def phone_search_digits(raw: str) -> str:
    """The digits a user would type to find this phone: national number without country code."""
    known = _NATIONAL.get(raw)
    if known is not None:
        return known
    try:
        parsed = phonenumbers.parse(raw.strip(), DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return _DIGITS.sub("", raw)
    if not phonenumbers.is_valid_number(parsed):
        return _DIGITS.sub("", raw)
    return str(parsed.national_number)


def mask_phone(value: str | None) -> str | None:
    """138****5678 style: the first three and last four digits of the national number."""
    if not value:
        return value
    digits = phone_search_digits(value)
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_email(value: str | None) -> str | None:
    if not value or "@" not in value:
        return value
    local, _, domain = value.partition("@")
    return (local[:1] or "*") + "***@" + domain


def mask_name(value: str | None) -> str | None:
    """张** / L** : a person's name reduced to its first character."""
    if not value:
        return value
    return value[0] + "*" * max(len(value) - 1, 1)


def mask_text(value: str | None) -> str | None:
    """For ids (WeChat, ID numbers): keep the ends only."""
    if not value:
        return value
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


class _CachedConverter(UltimateConverter):
    """pypinyin's own converter with its per-word results memoized: company names repeat words
    (有限公司, 科技, city names), and the style conversion is most of pypinyin's cost, so bulk
    imports stay fast while the output is exactly lazy_pinyin's."""

    @lru_cache(maxsize=100_000)  # noqa: B019  (one module-level instance, never freed anyway)
    def _convert_cached(
        self, words: str, style: Any, errors: str, strict: bool
    ) -> tuple[tuple[str, ...], ...]:
        converted = super().convert(words, style, False, errors, strict)
        return tuple(tuple(x) for x in converted)

    def convert(
        self,
        words: str,
        style: Style,
        heteronym: bool,
        errors: Callable[[str], str] | str,
        strict: bool = True,
        **kw: Any,
    ) -> list[list[str]]:
        if heteronym or not isinstance(errors, str) or kw:
            return super().convert(words, style, heteronym, errors, strict, **kw)
        return [list(x) for x in self._convert_cached(words, style, errors, strict)]


_PINYIN = Pinyin(_CachedConverter())


def pinyin_forms(text: str) -> tuple[str, str]:
    """Full pinyin and initials of `text` ('张经理' → zhangjingli, zjl)."""
    # Style.FIRST_LETTER is the first letter of each NORMAL syllable: one conversion serves both.
    syllables = _PINYIN.lazy_pinyin(text, errors="ignore")
    return "".join(syllables).lower(), "".join(s[:1] for s in syllables).lower()


def search_text(
    *,
    code: str,
    name: str,
    contact_names: Iterable[str],
    phones: Iterable[str],
    emails: Iterable[str],
) -> str:
    """One lower-cased field the trigram index covers: names, pinyin, code, phone digits, email."""
    words = search_words(name=name, contact_names=contact_names, phones=phones, emails=emails)
    return with_code(code, words)


def with_code(code: str, words: str) -> str:
    """Prefix the code to `search_words` output (bulk imports learn the code last)."""
    return f"{code.lower()} {words}" if words else code.lower()


def search_words(
    *,
    name: str,
    contact_names: Iterable[str],
    phones: Iterable[str],
    emails: Iterable[str],
) -> str:
    """The search text without the code."""
    parts = [name.lower(), *pinyin_forms(name)]
    for contact in contact_names:
        if contact:
            parts.extend([contact.lower(), *pinyin_forms(contact)])
    for phone in phones:
        if phone:
            parts.append(phone_search_digits(phone))
    for email in emails:
        if email:
            parts.append(email.lower())
    return " ".join(p for p in parts if p)


def query_forms(q: str) -> tuple[str, str | None]:
    """(text form, digits form) of a search query; digits only when it looks like a phone."""
    text = q.strip().lower()
    stripped = re.sub(r"[\s+().-]", "", text)
    if stripped.isdigit() and len(stripped) >= 4:
        if len(stripped) > 11 and stripped.startswith("86"):
            stripped = stripped[2:]  # +86 typed in front of a mainland number
        # A landline's trunk 0 (021…, 0755…) is not part of the stored national number.
        stripped = stripped.lstrip("0") or stripped
        return text, stripped
    return text, None
