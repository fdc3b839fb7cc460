"""Logging of cxpulse processes: human-readable lines, or one JSON object per line
(`CXPULSE_LOG_FORMAT=json`) for log shippers: timestamp, level, logger, message, and the
exception when there is one."""

from __future__ import annotations

import logging.config
from typing import Any

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(threadName)s %(message)s"


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for the root logger; faust's worker takes the same dict."""
    formatter: dict[str, Any] = (
        {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FIELDS, "timestamp": True}
        if fmt == "json"
        else {"format": TEXT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cxpulse": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "cxpulse",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": level.upper(), "handlers": ["console"]},
    }


def configure(level: str, fmt: str) -> None:
    logging.config.dictConfig(logging_config(level, fmt))
