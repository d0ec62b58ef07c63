"""Reading uploaded sheets as a stream of rows, never the whole file in memory.

CSV: UTF-8 (with or without BOM) or GBK/GB18030, comma, semicolon or tab separated, read through
the csv module over a text stream. XLSX: openpyxl in read-only mode, after the zip's declared
sizes and compression ratios are checked, so a zip bomb is refused before it is inflated.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls (and .doc)
SNIFF_BYTES = 1024 * 1024
# The largest cell the csv module accepts; a broken quote otherwise swallows the whole file.
csv.field_size_limit(1024 * 1024)


class FileProblem(Exception):
    """The upload is not a readable sheet. `kind`: type (415), broken or unsafe (422)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class SheetInfo:
    format: str  # csv | xlsx
    encoding: str | None = None
    delimiter: str = ","


def _decodes(data: bytes, encoding: str) -> bool:
    # An incremental decoder tolerates a character cut at the end of the sample.
    try:
        codecs.getincrementaldecoder(encoding)().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(sample: bytes) -> str | None:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if _decodes(sample, "utf-8"):
        return "utf-8"
    if _decodes(sample, "gb18030"):
        return "gb18030"  # a superset of GBK and GB2312
    return None


def check_zip(path: Path, *, max_unzipped: int, max_ratio: int) -> None:
    """Refuse archives that inflate past `max_unzipped` or compress suspiciously well."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileProblem("broken", f"not a readable XLSX file ({exc})") from exc
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024 * 1024 and ratio > max_ratio:
            raise FileProblem(
                "unsafe",
                f"the XLSX part {info.filename} inflates {ratio:.0f}× (limit {max_ratio}×); "
                "refusing a possible zip bomb",
            )
    if total > max_unzipped:
        raise FileProblem(
            "unsafe", f"the XLSX file inflates to {total} bytes (limit {max_unzipped})"
        )
    if "[Content_Types].xml" not in names or not any(n.startswith("xl/") for n in names):
        raise FileProblem("broken", "a zip archive, but not an XLSX workbook")


def sniff(path: Path, file_name: str, *, max_unzipped: int, max_ratio: int) -> SheetInfo:
    """Decide what the upload is from its bytes (the name only breaks ties)."""
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    name = file_name.lower()
    if not head.strip():
        raise FileProblem("broken", "the file is empty")
    if head.startswith(XLSX_MAGIC):
        check_zip(path, max_unzipped=max_unzipped, max_ratio=max_ratio)
        return SheetInfo(format="xlsx")
    if head.startswith(OLE_MAGIC):
        raise FileProblem("type", "legacy .xls files are not supported; save as .xlsx or CSV")
    if name.endswith((".xlsx", ".xlsm")):
        raise FileProblem("broken", "the file is named .xlsx but is not an XLSX workbook")
    if b"\x00" in head:
        raise FileProblem("type", "not a CSV or XLSX file")
    encoding = detect_encoding(head)
    if encoding is None:
        raise FileProblem("broken", "the CSV is neither UTF-8 nor GBK text")
    first_line = head.decode(encoding, errors="ignore").split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first_line.count)
    return SheetInfo(format="csv", encoding=encoding, delimiter=delimiter)


class SheetReader:
    """Rows of the first worksheet (or the CSV) as (row number, cells); row 1 is the header.

    `progress` is the share of the file read so far, for the job's percent.
    """

    def __init__(self, path: Path, info: SheetInfo) -> None:
        self.path = path
        self.info = info
        self.size = max(path.stat().st_size, 1)
        self.progress = 0.0
        self._close: list[Any] = []

    def __enter__(self) -> SheetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for closer in reversed(self._close):
            closer()

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        if self.info.format == "xlsx":
            yield from self._xlsx_rows()
        else:
            yield from self._csv_rows()

    def _csv_rows(self) -> Iterator[tuple[int, list[Any]]]:
        raw = self.path.open("rb")
        text = io.TextIOWrapper(raw, encoding=self.info.encoding or "utf-8", newline="")
        self._close.append(text.close)  # closes `raw` too
        reader = csv.reader(text, delimiter=self.info.delimiter)
        try:
            for number, cells in enumerate(reader, start=1):
                if number % 1000 == 0:
                    self.progress = raw.tell() / self.size
                yield number, cells
        except UnicodeDecodeError as exc:
            raise FileProblem(
                "broken", f"the CSV is not valid {self.info.encoding} text near byte {raw.tell()}"
            ) from exc
        except csv.Error as exc:
            raise FileProblem("broken", f"the CSV is malformed: {exc}") from exc
        self.progress = 1.0

    def _xlsx_rows(self) -> Iterator[tuple[int, list[Any]]]:
        import openpyxl

        # A file object: openpyxl would judge a path by its extension (spooled files have none).
        fh = self.path.open("rb")
        self._close.append(fh.close)
        try:
            wb = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a damaged file
            raise FileProblem("broken", f"not a readable XLSX workbook ({exc})") from exc
        self._close.append(wb.close)
        ws = wb.worksheets[0]
        total = max(ws.max_row or 1, 1)
        try:
            for number, cells in enumerate(ws.iter_rows(values_only=True), start=1):
                if number % 1000 == 0:
                    self.progress = min(number / total, 1.0)
                yield number, list(cells)
        except (KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
            raise FileProblem("broken", f"the XLSX workbook is damaged ({exc})") from exc
        self.progress = 1.0


def read_header(path: Path, info: SheetInfo, *, sample_rows: int = 50) -> list[str]:
    """The header row, after reading a few rows to catch a broken file at upload time."""
    with SheetReader(path, info) as reader:
        header: list[str] | None = None
        for number, cells in reader.rows():
            if header is None:
                header = ["" if c is None else str(c) for c in cells]
            if number > sample_rows:
                break
    if not header or not any(h.strip() for h in header):
        raise FileProblem("broken", "the first row must hold the column headers")
    return header
