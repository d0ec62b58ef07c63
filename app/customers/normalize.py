"""Normalizing phones and emails, masking PII, and building the search text (pinyin included)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import groupby
from typing import Any

import phonenumbers
from pypinyin import Style
from pypinyin.constants import PHRASES_DICT, RE_HANS
from pypinyin.converter import UltimateConverter
from pypinyin.core import Pinyin
from pypinyin.seg import mmseg

DEFAULT_REGION = "CN"
_DIGITS = re.compile(r"\D+")

# The usual mainland forms, read without phonenumbers' general parser (about 60 µs a number):
# a mobile 1xx xxxx xxxx with an optional +86/0086, and a landline 0 + area code + number. The
# national number is then checked against the same metadata patterns phonenumbers validates with
# (general pattern and the mobile or fixed-line pattern, with their possible lengths); anything
# else, or anything these do not prove valid, goes through phonenumbers itself. Neither form can
# carry a national prefix or carrier code phonenumbers would strip (a mobile never starts with
# 11, 12 or 179; a landline's only prefix is its trunk 0), so the number read is the one
# phonenumbers reads; tests/imports/test_fast_paths.py checks the equivalence.
_MOBILE_FORM = re.compile(r"(?:(?:\+|00)86[ -]?)?(1\d\d)[ -]?(\d{4})[ -]?(\d{4})", re.ASCII)
_LANDLINE_FORM = re.compile(r"0([1-9]\d{1,2})[ -]?(\d{3,4})[ -]?(\d{4})", re.ASCII)
_CN = phonenumbers.PhoneMetadata.metadata_for_region(DEFAULT_REGION)
assert _CN is not None


def _desc_matcher(desc: Any) -> Callable[[str], bool]:
    pattern = re.compile(desc.national_number_pattern)
    lengths = frozenset(desc.possible_length)
    return lambda nsn: len(nsn) in lengths and pattern.fullmatch(nsn) is not None


_CN_GENERAL = _desc_matcher(_CN.general_desc)
_CN_MOBILE = _desc_matcher(_CN.mobile)
_CN_FIXED = _desc_matcher(_CN.fixed_line)


def _fast_e164(text: str) -> str | None:
    """E.164 of a usual mainland form proven valid, else None (undecided, not invalid)."""
    m = _MOBILE_FORM.fullmatch(text)
    if m is not None:
        nsn = "".join(m.groups())
        return f"+86{nsn}" if _CN_MOBILE(nsn) and _CN_GENERAL(nsn) else None
    m = _LANDLINE_FORM.fullmatch(text)
    if m is not None:
        nsn = "".join(m.groups())
        return f"+86{nsn}" if _CN_FIXED(nsn) and _CN_GENERAL(nsn) else None
    return None


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """E.164 for a valid number in any usual format (+86 138-1234-5678, 0755 8888 6666)."""
    text = raw.strip()
    if not text:
        return None
    if region == DEFAULT_REGION:
        fast = _fast_e164(text)
        if fast is not None:
            _remember_national(fast, fast[3:])
            return fast
    return parse_phone(text, region)


def parse_phone(text: str, region: str = DEFAULT_REGION) -> str | None:
    """`normalize_phone` through phonenumbers' parser alone (its reference behaviour)."""
    text = text.strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164 = str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    _remember_national(e164, str(parsed.national_number))
    return e164


_NATIONAL: dict[str, str] = {}


def _remember_national(e164: str, national: str) -> None:
    # The search text needs the national digits of the number just normalized: keep them, so
    # bulk writes parse each phone once.
    if len(_NATIONAL) > 10_000:
        _NATIONAL.clear()
    _NATIONAL[e164] = national


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


class _CharPinyin:
    """lazy_pinyin's syllables without its segmentation where that provably changes nothing.

    pypinyin splits text into runs of Chinese characters, cuts each run into dictionary phrases
    (forward maximum matching) and reads a phrase from its phrase entry, a lone character from
    its own first reading. A character whose reading in every phrase containing it is its own
    reading (in the NORMAL style, tones dropped) reads the same whatever the cut; a run made only
    of such characters is read a character at a time from a table (5-10× faster). A run holding
    one of the few hundred others (重 in 重庆, 行 in 银行, 长 in 长沙) is cut and read exactly as
    pypinyin does, with the same cutter and converter.
    """

    def __init__(self, converter: UltimateConverter) -> None:
        self._converter = converter
        self._risky: frozenset[str] | None = None
        self._syllable: dict[str, str] = {}
        self._han: dict[str, bool] = {}
        self._runs: dict[str, tuple[str, ...]] = {}  # runs read through the cut (names repeat)

    def _read(self, char: str) -> str:
        converted = self._converter.convert(char, Style.NORMAL, False, "ignore", True)
        return "".join(x for item in converted for x in item)

    def _find_risky(self) -> frozenset[str]:
        risky: set[str] = set()
        own: dict[str, str] = {}
        for phrase, readings in PHRASES_DICT.items():
            if len(phrase) == 1:
                continue
            if len(readings) != len(phrase):  # not read a character at a time
                risky.update(phrase)
                continue
            for char, reading in zip(phrase, readings, strict=True):
                if char in risky:
                    continue
                mine = own.get(char)
                if mine is None:
                    mine = own[char] = self._read(char)
                styled = self._converter.convert_style(char, reading[0], Style.NORMAL, True)
                if styled != mine:
                    risky.add(char)
        return frozenset(risky)

    def _is_han(self, char: str) -> bool:
        known = self._han.get(char)
        if known is None:
            if len(self._han) > 50_000:
                self._han.clear()
            known = self._han[char] = RE_HANS.match(char) is not None
        return known

    def _char(self, char: str) -> str:
        syllable = self._syllable.get(char)
        if syllable is None:
            if len(self._syllable) > 50_000:
                self._syllable.clear()
            syllable = self._syllable[char] = self._read(char)
        return syllable

    def syllables(self, text: str) -> list[str]:
        """lazy_pinyin(text, errors='ignore'), empty syllables left out."""
        risky = self._risky
        if risky is None:
            risky = self._risky = self._find_risky()
        out: list[str] = []
        for char in text:
            if char in risky:
                return self._by_runs(text, risky)
            syllable = self._char(char)
            if syllable:
                out.append(syllable)
        return out

    def _by_runs(self, text: str, risky: frozenset[str]) -> list[str]:
        out: list[str] = []
        for is_han, chars in groupby(text, key=self._is_han):
            if not is_han:  # no pinyin: ignored
                continue
            run = "".join(chars)
            if risky.isdisjoint(run):
                out.extend(s for s in map(self._char, run) if s)
                continue
            read = self._runs.get(run)
            if read is None:
                if len(self._runs) > 50_000:
                    self._runs.clear()
                read = self._runs[run] = tuple(
                    s
                    for word in mmseg.seg.cut(run)
                    for item in _PINYIN_CONVERTER.convert(word, Style.NORMAL, False, "ignore", True)
                    for s in item
                    if s
                )
            out.extend(read)
        return out


_PINYIN_CONVERTER = _CachedConverter()
_PINYIN = Pinyin(_PINYIN_CONVERTER)
_CHAR_PINYIN = _CharPinyin(UltimateConverter())


def warm() -> None:
    """Build the reading tables now rather than on the first name read: scanning pypinyin's
    phrase dictionary for the characters a phrase reads differently takes 0.3–0.7 s, which the
    first customer written after a start would otherwise wait for."""
    _CHAR_PINYIN.syllables("重庆")


def pinyin_forms(text: str) -> tuple[str, str]:
    """Full pinyin and initials of `text` ('张经理' → zhangjingli, zjl)."""
    # Style.FIRST_LETTER is the first letter of each NORMAL syllable: one conversion serves both.
    syllables = _CHAR_PINYIN.syllables(text)
    return "".join(syllables).lower(), "".join(s[:1] for s in syllables).lower()


def segmented_pinyin_forms(text: str) -> tuple[str, str]:
    """`pinyin_forms` through pypinyin's segmentation alone (its reference behaviour)."""
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
