"""JSON log lines on stderr. Messages name positions and ids, never personal identifiers.

Each line also carries what is known about the request it was written for: its correlation id,
its receipt id and the reporting unit (an organisation number: a business, not a person). The
fields live in a context variable, so they follow the request through every ``await`` without
being passed down, and the set of names is closed, so nothing else can be bound to a line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType

import orjson

# The names are closed by the functions below: nothing else can set them.
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})
_fields: ContextVar[Mapping[str, str]] = ContextVar("intake_log_fields", default=_NO_FIELDS)


def begin_request_log(correlation_id: str) -> Token[Mapping[str, str]]:
    """Start a request's fields, dropping any an earlier request left in this task."""
    return _fields.set({"correlation_id": correlation_id})


def end_request_log(token: Token[Mapping[str, str]]) -> None:
    _fields.reset(token)


def bind_log_fields(*, unit: str | None = None, receipt_id: str | None = None) -> None:
    """Add what has become known about the current request to its later log lines."""
    fields = dict(_fields.get())
    if unit is not None:
        fields["unit"] = unit
    if receipt_id is not None:
        fields["receipt_id"] = receipt_id
    # A new mapping, never a mutation: a context copied earlier (a task started before) keeps
    # the fields it had.
    _fields.set(fields)


def log_fields() -> Mapping[str, str]:
    return _fields.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            **_fields.get(),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


# Libraries that log SQL parameters (personal data) at DEBUG: never below INFO, whatever the
# root level, so turning on debug logging cannot leak identifiers.
PARAMETER_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "asyncpg")


def keep_parameters_out_of_logs() -> None:
    for name in PARAMETER_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    keep_parameters_out_of_logs()
