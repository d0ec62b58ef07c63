"""Structured JSON logs. Only allow-listed keys are emitted, so no PII or secret leaks in."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from app.core.context import request_id_var

# Keys a caller may attach with `extra=`; anything else (a payload, an email) is dropped.
SAFE_EXTRA_KEYS = frozenset(
    {"method", "route", "status", "duration_ms", "principal", "error", "job_id", "count", "event"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage() if not record.args else record.msg,
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key in SAFE_EXTRA_KEYS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and the code location only: messages may quote row values.
            entry["exc_type"] = record.exc_info[0].__name__
            tb = record.exc_info[2]
            frames = []
            while tb is not None:
                frames.append(f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
                tb = tb.tb_next
            entry["trace"] = frames[-8:]
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO") -> None:
    # Our records never show the caller's file/line, thread or process (see JsonFormatter), so
    # skip collecting them: the logging HOWTO's "Optimization" switches. Every request logs one
    # access line, and the stack walk behind the caller's location was most of its cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints full query strings, which can carry phone numbers. Not
    # propagating either: uvicorn builds each request's line (quoting its path) whenever the
    # logger has a handler up its tree, disabled or not (`hasHandlers()`, read per connection).
    access = logging.getLogger("uvicorn.access")
    access.disabled = True
    access.propagate = False
    access.handlers[:] = []
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
