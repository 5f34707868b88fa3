"""Structured logs: one JSON object per line, with the request id and personal data masked.

The request id comes from a context variable that :class:`apps.core.observability.RequestObserver`
sets for each request, so every line logged while serving it (routes, services, uvicorn's
error logger) carries it without passing it around.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from apps.core.pii import mask_pii

if TYPE_CHECKING:
    from apps.core.settings import ObservabilitySettings

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "request_id_var", "uvicorn_log_config"]

request_id_var: ContextVar[str | None] = ContextVar("kgnlp_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_MARK = "_kgnlp_handler"


def _masked(value: Any, mask: bool) -> Any:
    if not mask:
        return value
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: _masked(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, mask) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Format records as JSON lines: ``ts, level, logger, message, request_id``, extras, ``exc``.

    Args:
        mask: replace personal data (see :func:`apps.core.pii.mask_pii`) in every string value.
    """

    def __init__(self, mask: bool = True) -> None:
        super().__init__()
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(_masked(entry, self.mask), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines (``time level logger [request id] message``), masked like the JSON ones.

    Args:
        mask: replace personal data in the formatted line.
    """

    def __init__(self, mask: bool = True) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get() or "-"
        line = super().format(record)
        return mask_pii(line) if self.mask else line


def _formatter(settings: ObservabilitySettings) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter(mask=settings.mask_pii_logs)
    return TextFormatter(mask=settings.mask_pii_logs)


def configure_logging(settings: ObservabilitySettings) -> None:
    """Send the root logger's output to stderr in the configured format (idempotent).

    Replaces a handler this function installed before; leaves other handlers alone.

    Args:
        settings: ``log_format``, ``log_level``, ``mask_pii_logs``.
    """
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for h in list(root.handlers):
        if getattr(h, _MARK, False):
            root.removeHandler(h)
        elif isinstance(h.formatter, JsonFormatter | TextFormatter):
            return  # uvicorn_log_config already routed the root logger through ours
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(settings))
    setattr(handler, _MARK, True)
    root.addHandler(handler)


def uvicorn_log_config(settings: ObservabilitySettings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(log_config=…)``: uvicorn's loggers and
    the root logger all write through the kgnlp formatter (in every worker process).

    Args:
        settings: the observability settings.

    Returns:
        the dict config.
    """
    cls = (
        "apps.core.logging_setup.JsonFormatter"
        if settings.log_format == "json"
        else "apps.core.logging_setup.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"kgnlp": {"()": cls, "mask": settings.mask_pii_logs}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "kgnlp", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": settings.log_level, "propagate": False},
            "uvicorn.error": {"level": settings.log_level},
            "uvicorn.access": {"handlers": ["stderr"], "level": settings.log_level, "propagate": False},
            # faiss narrates its CPU-feature fallback at INFO, ModuleNotFoundError text included
            "faiss.loader": {"level": "WARNING" if settings.log_level == "INFO" else settings.log_level},
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
    }
