"""Structured logs: JSON lines in production, a readable console renderer for people.

structlog renders every event; records from the stdlib ``logging`` module (libraries,
asyncio) go through the same processors, so one stream carries one format. gRPC's C
core logs on its own (GRPC_VERBOSITY / GRPC_TRACE environment variables), not here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

FORMATS = ("json", "console")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(
    format: str = "json", level: str = "info", stream: TextIO | None = None
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr) as JSON lines or console text."""
    if format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {format!r}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderers(format),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])


def _renderers(format: str) -> list[Any]:
    if format == "console":
        return [structlog.dev.ConsoleRenderer(colors=False)]
    # One line per event: the traceback goes into an "exception" string field.
    return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(sort_keys=True)]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger whose events carry ``logger=name``; bind fields with ``.bind(...)``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
