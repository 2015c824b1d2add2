"""Prometheus text exposition of the gateway's counters."""

from __future__ import annotations

from gateway.agencies import Agencies
from gateway.audit import AuditLog

_AGENCY_COUNTERS = (
    ("gateway_agency_calls_total", "Batched calls made to an agency.", "calls"),
    ("gateway_agency_keys_total", "Keys looked up at an agency.", "keys"),
    ("gateway_agency_failures_total", "Failed agency calls or keys.", "failures"),
    ("gateway_agency_timeouts_total", "Agency calls that timed out.", "timeouts"),
    ("gateway_agency_retries_total", "Agency calls retried after a failure.", "retries"),
    ("gateway_agency_rejected_total", "Calls refused at once: circuit open.", "rejected"),
    ("gateway_agency_stale_total", "Answers served stale from the cache.", "stale_served"),
    ("gateway_agency_coalesced_total", "Calls that merged several requests' keys.", "coalesced"),
    ("gateway_agency_cache_hits_total", "Keys answered fresh from the cache.", "cache_hits"),
)


def render_metrics(agencies: Agencies, audit: AuditLog | None = None) -> str:
    lines: list[str] = []
    if audit is not None:
        lines += [
            "# HELP gateway_audit_records_total Audit records committed.",
            "# TYPE gateway_audit_records_total counter",
            f"gateway_audit_records_total {audit.records_written}",
            "# HELP gateway_audit_commits_total Audit transactions (group commits).",
            "# TYPE gateway_audit_commits_total counter",
            f"gateway_audit_commits_total {audit.commits}",
        ]
    for name, help_text, attr in _AGENCY_COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for code, agency in sorted(agencies.by_code.items()):
            lines.append(f'{name}{{agency="{code}"}} {getattr(agency.stats, attr)}')
    return "\n".join(lines) + "\n"
