"""Structured JSON logs: one object per line, each with the request id it belongs to."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

#: the id of the request being served in this context ("-" outside a request)
request_id_var: ContextVar[str] = ContextVar("twinkit_request_id", default="-")

LOGGER_NAME = "twinkit.service"
# A client's X-Request-ID is kept only if it is short and plain (it goes into logs).
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


def new_request_id(given: str | None) -> str:
    """The client's id if it is safe to log, else a fresh one.

    >>> new_request_id("abc-1")
    'abc-1'
    >>> len(new_request_id("has spaces and\\nnewlines"))
    32
    """
    if given is not None and _CLIENT_ID.match(given):
        return given
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message, request id, the
    process id (which worker of ``serve --workers N``), extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the service's logs (and uvicorn's) to stderr as JSON lines; idempotent."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
