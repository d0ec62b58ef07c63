"""Import problems a client can fix: the wrong kind of file, or a file that cannot be read."""

from __future__ import annotations

from app.core.errors import AppError


class UnsupportedFile(AppError):
    status, type, title = 415, "unsupported-file-type", "Unsupported file type"
    detail_en = "Upload a CSV (UTF-8 or GBK) or an XLSX file."
    detail_zh = "请上传 CSV（UTF-8 或 GBK 编码）或 XLSX 文件。"


class InvalidFile(AppError):
    status, type, title = 422, "invalid-file", "Invalid file"
    detail_en = "The file cannot be read."
    detail_zh = "文件无法读取。"
