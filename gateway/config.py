"""Configuration: one TOML file, overridable by ``GATEWAY__SECTION__KEY`` variables.

Without a file the gateway runs its embedded demo (see ``gateway.demo.embedded``), which
builds a :class:`Config` in memory.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.records import DATASETS
from adapters.trust import TrustError, check_no_userinfo

DEFAULT_FILE = "gateway.toml"
ENV_FILE = "GATEWAY_CONFIG"
ENV_PREFIX = "GATEWAY__"
DEFAULT_COST_WEIGHT = 10

#: Which datasets the demo's agency codes serve when their table has no ``datasets`` key
#: (the zero-config demo relies on these). Any other agency code must say what it serves.
DEFAULT_DATASETS: dict[str, tuple[str, ...]] = {
    "registry": ("resident", "household"),
    "nhis": ("insurance",),
    "nts": ("taxes",),
    "nps": ("pension",),
    "mma": ("military_service",),
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why.

    ``problems`` lists every problem found (one line each); the message joins them.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        self.problems: list[str] = list(problems) if problems else [message]
        super().__init__(message)

    @classmethod
    def of(cls, problems: Sequence[str]) -> ConfigError:
        return cls("\n".join(problems), problems)


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``known``, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class Problems:
    """Collects every problem of a configuration, each naming the variable that set the
    value when it came from the environment (``GATEWAY__...``)."""

    def __init__(self, origins: Mapping[str, str] | None = None) -> None:
        self.items: list[str] = []
        self.origins = dict(origins or {})

    def add(self, message: str, *path: str) -> None:
        origin = self.origins.get(".".join(path)) if path else None
        self.items.append(message + (f" (set by ${origin})" if origin else ""))

    def check(self, run: Callable[[], object]) -> None:
        """Run a check that raises ConfigError, keeping its problems."""
        try:
            run()
        except ConfigError as exc:
            self.items.extend(exc.problems)

    def raise_any(self) -> None:
        if self.items:
            raise ConfigError.of(self.items)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""
    #: asyncpg's prepared-statement cache; 0 behind PgBouncer in transaction mode.
    statement_cache_size: int = 100


@dataclass(frozen=True)
class CacheConfig:
    backend: str = "memory"
    url: str = ""
    namespace: str = "gw"  # key prefix: deployments sharing one Redis keep apart


@dataclass(frozen=True)
class AuthConfig:
    secret: str = ""
    jwks_url: str = ""
    issuer: str = "resident-gateway"
    audience: str = "resident-gateway"


@dataclass(frozen=True)
class LimitsConfig:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000
    max_cost: int = 5000  # see docs/query-safety.md for the cost model
    max_household: int = 20  # members the cost model assumes a household has
    max_batch: int = 100
    max_body_bytes: int = 65536
    request_timeout_ms: int = 10000  # agency retries never run past it
    # Per principal (the token's sub) and window; 0 turns that limit off. See ratelimit.py.
    rate_requests: int = 600
    rate_cost: int = 100_000
    rate_window_s: int = 60

    # Off: __schema/__type are refused (BAD_REQUEST) and "Did you mean" hints are dropped.
    introspection: bool = True


PERSISTED_MODES = ("off", "apq", "trusted")


@dataclass(frozen=True)
class PersistedConfig:
    mode: str = "off"
    manifest: str = "persisted-documents.json"  # relative to the config file
    allow_free_form_roles: Sequence[str] = ()  # trusted mode: roles that may still send text
    apq_ttl_s: int = 86400  # how long a registered APQ document is kept
    apq_max_entries: int = 2000  # memory backend only


@dataclass(frozen=True)
class PolicyConfig:
    file: str = "policy.toml"


@dataclass(frozen=True)
class AuditConfig:
    key: str = ""  # HMAC key for RRN hashes and the chain; keep it out of the database
    retention_days: int = 730
    enabled: bool = True
    write_timeout_ms: int = 5000  # a request waits this long for its records to commit
    # Where the gateway records the chain head it reached (SEQ:HASH), outside the database:
    # a restored older head is refused at start-up. Empty: not recorded (only in memory).
    head_file: str = ""


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # "json": one JSON object per line (docs/operations.md)
    level: str = "INFO"
    requests: bool = True  # one line per request (logger gateway.request)


@dataclass(frozen=True)
class MetricsConfig:
    #: A file holding the bearer token Prometheus sends (``authorization.credentials_file``).
    token_file: str = ""
    #: "HOST:PORT" of a listener serving only /metrics (an internal address).
    listen: str = ""
    #: Distinct operation names a process labels metrics with; later ones count as "other".
    max_operations: int = 100
    #: The operation names metrics are labelled with; others count as "other". Empty: the
    #: first ``max_operations`` names seen, which any caller can fill with names of its own
    #: (docs/operations.md): list your clients' operations in production.
    operations: Sequence[str] = ()


@dataclass(frozen=True)
class TracingConfig:
    #: OTLP/HTTP traces endpoint (``http://collector:4318/v1/traces``); empty: tracing off.
    otlp_endpoint: str = ""
    service_name: str = "resident-gateway"


@dataclass(frozen=True)
class StatisticsConfig:
    #: Counts under k are suppressed (docs/statistics.md).
    k: int = 10


@dataclass(frozen=True)
class CertificatesConfig:
    #: References ("env:NAME", "file:PATH") to private keys (PEM or JWK JSON, Ed25519 or
    #: P-256): the first signs, the rest only verify (see gateway/certificate_keys.py).
    #: Empty: no certificates are issued (the embedded demo makes a key of its own).
    keys: Sequence[str] = ()
    ttl_days: int = 90
    issuer: str = "resident-gateway"
    #: Certificates one citizen may be issued in 24 hours (RATE_LIMITED past it).
    issues_per_day: int = 10


@dataclass(frozen=True)
class AgencyConfig:
    code: str
    kind: str
    dsn: str = ""
    url: str = ""
    timeout_ms: int = 2000
    retries: int = 1
    max_concurrency: int = 4  # batches in flight; more wait and are merged (see agencies.py)
    cache: bool = True
    cache_ttl_s: int = 60
    stale_ttl_s: int = 3600
    cost_weight: int = DEFAULT_COST_WEIGHT  # cost of one read of this agency (docs/query-safety.md)
    #: The datasets this agency serves; None: the default of its code (``DEFAULT_DATASETS``).
    datasets: tuple[str, ...] | None = None
    # Everything in the agency's table, for adapters that take keys of their own.
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourcesConfig:
    #: Datasets deliberately served by no agency: their fields answer AGENCY_UNAVAILABLE.
    #: Any other dataset without an agency stops start-up (see ``sources``).
    unserved: Sequence[str] = ()


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    persisted: PersistedConfig = field(default_factory=PersistedConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    certificates: CertificatesConfig = field(default_factory=CertificatesConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    agencies: Mapping[str, AgencyConfig] = field(default_factory=dict)
    source: Path | None = None
    #: "section.key" (or "agencies.code.key") -> the GATEWAY__ variable that set it.
    origins: Mapping[str, str] = field(default_factory=dict)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "cache": CacheConfig,
    "auth": AuthConfig,
    "limits": LimitsConfig,
    "policy": PolicyConfig,
    "persisted": PersistedConfig,
    "audit": AuditConfig,
    "sources": SourcesConfig,
    "statistics": StatisticsConfig,
    "certificates": CertificatesConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
    "tracing": TracingConfig,
}


def find_file(explicit: str | None = None) -> Path | None:
    """The config file to use: ``--config``, then ``$GATEWAY_CONFIG``, then ./gateway.toml."""
    name = explicit or os.environ.get(ENV_FILE)
    if name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or nothing), apply environment overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    origins: dict[str, str] = {}
    apply_env(raw, os.environ if environ is None else environ, origins)
    return from_dict(raw, source=path, origins=origins)


def apply_env(
    raw: dict[str, Any], environ: Mapping[str, str], origins: dict[str, str] | None = None
) -> None:
    """``GATEWAY__LIMITS__MAX_DEPTH=8`` sets ``raw["limits"]["max_depth"] = 8``.

    Values are read as TOML literals when they parse as one (numbers, booleans,
    quoted strings, arrays) and taken as plain strings otherwise; a key that takes a string
    keeps the variable's text unless it is a quoted TOML string (a secret of digits stays
    text, rather than become a number refused, and quoted, by the check). ``origins`` records
    which variable set which key ("limits.max_depth" -> "GATEWAY__LIMITS__MAX_DEPTH").
    """
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if len(path) < 2:
            continue
        table = raw
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{name} overrides {part}, which is not a table")
        literal = _literal(value)
        if not isinstance(literal, str) and _takes_text(path):
            literal = value  # text, as the variable gave it: a secret of digits stays one
        table[path[-1]] = literal
        if origins is not None:
            origins[".".join(path)] = name


def overlay(base: Config, environ: Mapping[str, str]) -> Config:
    """``base`` (a Config built in memory, like the embedded demo's) with the
    ``GATEWAY__...`` overrides of ``environ`` applied and the result validated."""
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    apply_env(raw, environ, origins)
    if not raw:
        return base
    merged: dict[str, Any] = {}
    for name in _SECTIONS:
        merged[name] = dataclasses.asdict(getattr(base, name)) | raw.pop(name, {})
    defaults = {f.name: f.default for f in dataclasses.fields(AgencyConfig)}
    agencies = {
        code: {
            name: getattr(a, name)
            for name in _AGENCY_KEYS
            if name == "kind" or getattr(a, name) != defaults[name]
        }
        | dict(a.settings)
        for code, a in base.agencies.items()
    }
    for code, table in raw.pop("agencies", {}).items():
        agencies.setdefault(code, {}).update(table if isinstance(table, dict) else {})
    for table in agencies.values():
        if table.get("datasets") is None:
            table.pop("datasets", None)
    merged["agencies"] = agencies
    merged.update(raw)  # unknown sections: reported by from_dict
    return from_dict(merged, source=base.source, origins=origins)


def _takes_text(path: Sequence[str]) -> bool:
    """Does the key at ``path`` (section, key; or agencies, code, key) take a string?"""
    if len(path) == 2 and path[0] in _SECTIONS:
        fields = {f.name: f.type for f in dataclasses.fields(_SECTIONS[path[0]])}
    elif len(path) == 3 and path[0] == "agencies":
        fields = {f.name: f.type for f in dataclasses.fields(AgencyConfig)}
    else:
        return False
    return str(fields.get(path[-1])) == "str"


def _literal(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def from_dict(
    raw: Mapping[str, Any], source: Path | None = None, origins: Mapping[str, str] | None = None
) -> Config:
    """Build and validate a Config; raises ConfigError listing every problem found."""
    problems = Problems(origins)
    known_sections = [*_SECTIONS, "agencies"]
    for name in sorted(set(raw) - set(known_sections)):
        problems.add(f"unknown section [{name}]{suggest(name, known_sections)}", name)
    sections = {
        name: _build(cls, raw.get(name, {}), name, problems) for name, cls in _SECTIONS.items()
    }
    agencies_raw = raw.get("agencies", {})
    agencies: dict[str, AgencyConfig] = {}
    if not isinstance(agencies_raw, dict):
        problems.add("[agencies] must be a table of agency tables", "agencies")
    else:
        for code, table in agencies_raw.items():
            agency = _collect_agency(code, table, problems)
            if agency is not None:
                agencies[code] = agency
    config = Config(**sections, agencies=agencies, source=source, origins=problems.origins)
    validate(config, problems)
    problems.raise_any()
    return config


def _build(cls: type[Any], table: Any, section: str, problems: Problems) -> Any:
    where = f"[{section}]"
    if not isinstance(table, dict):
        problems.add(f"{where} must be a table", section)
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    good = {}
    for key, value in table.items():
        if key not in fields:
            problems.add(f"{where}: unknown key {key}{suggest(key, fields)}", section, key)
        elif not _type_ok(fields[key].type, value):
            problems.add(
                f"{where}: {key} must be {fields[key].type}, got {_shown(key, value)}",
                section,
                key,
            )
        else:
            good[key] = value
    return cls(**good)


#: Keys whose values may be secrets (or carry one, as a DSN's password): a wrong type is
#: reported without the value (``GATEWAY__AUTH__SECRET=<40 digits>`` reads as a number).
_SECRET_WORDS = ("secret", "key", "password", "token", "auth", "credential", "dsn", "url")


def _shown(key: str, value: Any) -> str:
    """A wrong-typed value as a problem quotes it: secrets only by their type."""
    if any(word in key.lower() for word in _SECRET_WORDS):
        return f"a value of type {type(value).__name__} (not shown; quote it in TOML)"
    return repr(value)


def _type_ok(expected: Any, value: Any) -> bool:
    kinds = {"str": str, "int": int, "bool": bool}
    kind = kinds.get(str(expected))
    if kind is None:
        return True
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


_AGENCY_KEYS = {f.name for f in dataclasses.fields(AgencyConfig)} - {"code", "settings"}
#: What an agency code looks like ([agencies.<code>], policy agencies lists).
AGENCY_CODE = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def _agency(code: str, table: Any) -> AgencyConfig:
    """The agency of ``[agencies.<code>]``; raises ConfigError listing its problems."""
    problems = Problems()
    agency = _collect_agency(code, table, problems)
    problems.raise_any()
    assert agency is not None
    return agency


def _collect_agency(code: str, table: Any, problems: Problems) -> AgencyConfig | None:
    """The agency of ``[agencies.<code>]``, or None when it is unusable (its problems
    recorded in ``problems``)."""
    where = f"[agencies.{code}]"
    if not AGENCY_CODE.fullmatch(code):
        problems.add(
            f"{where}: {code!r} is not an agency code (lower-case letters, digits, - and _, "
            "starting with a letter)",
            "agencies",
            code,
        )
    if not isinstance(table, dict):
        problems.add(f"{where} must be a table", "agencies", code)
        return None
    if "kind" not in table:
        problems.add(f"{where}: kind is required (sql, http or a plugin name)", "agencies", code)
        return None
    types = {f.name: f.type for f in dataclasses.fields(AgencyConfig)}
    known = {k: v for k, v in table.items() if k in _AGENCY_KEYS}
    if "datasets" in known and table["kind"] == "graphql":
        problems.add(
            f"{where}: a graphql agency serves the Resident fields its subgraph contributes, "
            f"as dataset {code}; remove datasets",
            "agencies",
            code,
            "datasets",
        )
        return None
    usable = True
    if "datasets" in known:
        try:
            known["datasets"] = _dataset_names(known["datasets"], f"{where}: datasets")
        except ConfigError as exc:
            problems.items.extend(exc.problems)
            usable = False
    for key, value in known.items():
        if not _type_ok(types[key], value):
            problems.add(
                f"{where}: {key} must be {types[key]}, got {_shown(key, value)}",
                "agencies",
                code,
                key,
            )
            usable = False
    return AgencyConfig(code=code, settings=dict(table), **known) if usable else None


def _dataset_names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of dataset names, got {value!r}")
    unknown = [v for v in value if v not in DATASETS]
    if unknown:  # perhaps contributed by an installed agency package (gateway.federation)
        from gateway.federation import datasets

        known = datasets()
        unknown = [v for v in unknown if v not in known]
        if unknown:
            raise ConfigError.of(
                [
                    f"{where}: unknown dataset {name}{suggest(name, known)} "
                    f"(known: {', '.join(known)})"
                    for name in unknown
                ]
            )
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} names a dataset twice")
    return tuple(value)


def served_by(agency: AgencyConfig) -> tuple[str, ...]:
    """The datasets an agency serves: its ``datasets``, else its code's default. A GraphQL
    subgraph agency (``kind = "graphql"``) serves one, named after its code."""
    if agency.kind == "graphql":
        return (agency.code,)
    if agency.datasets is not None:
        return tuple(agency.datasets)
    if agency.code in DEFAULT_DATASETS:
        return DEFAULT_DATASETS[agency.code]
    raise ConfigError(
        f"[agencies.{agency.code}]: datasets is required (say which of "
        f"{', '.join(DATASETS)} it serves; only {', '.join(DEFAULT_DATASETS)} have a default)"
    )


def sources(config: Config, *, complete: bool = True) -> dict[str, str]:
    """Dataset -> the code of the one agency serving it. Raises ConfigError, one line, for an
    agency table naming unknown datasets or none, a dataset two agencies serve, or a dataset
    no agency serves that ``[sources] unserved`` does not list (every dataset is read by some
    schema field). Datasets listed there are left out: their fields answer AGENCY_UNAVAILABLE.
    ``complete=False`` skips the check for datasets without an agency (loading a file checks
    the rest; start-up and ``gateway check-config`` check everything).
    """
    found: dict[str, str] = {}
    for agency in config.agencies.values():
        where = f"[agencies.{agency.code}]"
        if agency.kind == "graphql":  # its dataset comes from its SDL (gateway.subgraph)
            names = served_by(agency)
            if names[0] in DATASETS:
                raise ConfigError(
                    f"{where}: a graphql agency's dataset is named after its code, and "
                    f"dataset {names[0]} already exists: choose another code"
                )
        else:
            names = _dataset_names(served_by(agency), f"{where}: datasets")
        if not names:
            raise ConfigError(f"{where}: datasets must name at least one dataset")
        for name in names:
            other = found.setdefault(name, agency.code)
            if other != agency.code:
                raise ConfigError(
                    f"dataset {name} has two sources: [agencies.{other}] and {where} "
                    "(give each dataset to one agency with datasets = [...])"
                )
    unserved = _dataset_names(config.sources.unserved, "[sources] unserved")
    both = [name for name in unserved if name in found]
    if both:
        owner = found[both[0]]
        raise ConfigError(f"[sources] unserved lists {both[0]}, which [agencies.{owner}] serves")
    missing = [name for name in DATASETS if name not in found and name not in unserved]
    if missing and complete:
        raise ConfigError(
            f"no agency serves dataset(s) {', '.join(missing)}: configure an agency for each "
            "(datasets = [...]) or list them in [sources] unserved"
        )
    return found


#: URL schemes each kind of endpoint accepts.
HTTP_SCHEMES = ("http", "https")
POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "unix")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a host name or IP address, or None."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(host) and len(host) <= 253:
        return None
    return f"{host!r} is not a host name or IP address"


def port_problem(port: object) -> str | None:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return None
    return f"port {port} is not between 1 and 65535"


_ENCODE = (
    "has a user or password holding '/', '?', '#', '@' or ':' as is: percent-encode them"
    " (%2F, %3F, %23, %40, %3A)"
)


def endpoint_problem(
    value: str, schemes: Sequence[str], *, host_required: bool = True
) -> str | None:
    """Why ``value`` is not a usable URL or DSN with one of ``schemes``, or None. The message
    never repeats the value (it may hold a password): only its scheme, host and port."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        close = suggest(scheme.split(":")[0].split("/")[0], schemes) if scheme else ""
        return f"is not a URL: it must start with {' or '.join(s + '://' for s in schemes)}{close}"
    if scheme not in schemes:
        return (
            f"scheme {scheme}:// is not one of {', '.join(s + '://' for s in schemes)}"
            f"{suggest(scheme, schemes)}"
        )
    if scheme == "unix":
        return None
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if scheme not in HTTP_SCHEMES and "@" in rest[len(head) :]:
        # A password holding '/', '?', '#', '@' or ':' as is: what the URL takes for the host
        # or the port is the password (or part of it), so neither may be repeated.
        return _ENCODE
    netloc = head.rpartition("@")[2]
    if not netloc:
        return "has no host" if host_required else None
    for part in netloc.split(",") if scheme in POSTGRES_SCHEMES else [netloc]:
        if part.startswith("["):
            host, _, port = part[1:].partition("]")
            port = port.removeprefix(":")
        elif part.count(":") > 1:  # not an IPv6 address in brackets: a password's ':'
            return _ENCODE
        else:
            host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            if host_required or port:
                return "has no host"
            continue
        problem = host_problem(host)
        if problem is not None:
            return problem
        if port and not port.isdigit():
            return f"port is not a number (or {_ENCODE.removeprefix('has ')})"
        if port:
            problem = port_problem(int(port))
            if problem is not None:
                return problem
    if " " in rest:
        return "contains a space"
    return None


def _dereference(value: str) -> tuple[str | None, str]:
    """A DSN given as a reference (``env:NAME``, ``file:PATH``; adapters/trust.py) is
    checked as what it names, when that is at hand: (value or None, where it came from)."""
    kind, _, name = value.partition(":")
    if kind == "env":
        return os.environ.get(name), f" (from {value})"
    if kind == "file":
        try:
            return Path(name).read_text().strip(), f" (from {value})"
        except OSError:
            return None, ""
    return value, ""


def validate(config: Config, problems: Problems | None = None) -> None:
    """Check a Config; raises ConfigError listing every problem (or adds them to
    ``problems``, which the caller raises)."""
    own = problems is None
    p = Problems(config.origins) if problems is None else problems
    server = config.server
    if (problem := host_problem(server.host)) is not None:
        p.add(f"[server] host: {problem}", "server", "host")
    if (problem := port_problem(server.port)) is not None:
        p.add(f"[server] {problem}", "server", "port")
    if server.workers < 1:
        p.add("[server] workers must be at least 1", "server", "workers")
    if config.database.statement_cache_size < 0:
        p.add(
            "[database] statement_cache_size must be 0 (off) or more",
            "database",
            "statement_cache_size",
        )
    if config.database.url:
        problem = endpoint_problem(config.database.url, POSTGRES_SCHEMES, host_required=False)
        if problem is not None:
            p.add(f"[database] url {problem}", "database", "url")
    if config.cache.backend not in ("memory", "redis"):
        p.add(
            f'[cache] backend must be "memory" or "redis"'
            f"{suggest(config.cache.backend, ['memory', 'redis'])}",
            "cache",
            "backend",
        )
    if config.cache.backend == "redis" and not config.cache.url:
        p.add("[cache] url is required when backend is redis", "cache", "url")
    if config.cache.url:
        problem = endpoint_problem(config.cache.url, REDIS_SCHEMES)
        if problem is not None:
            p.add(f"[cache] url {problem}", "cache", "url")
    if config.auth.jwks_url:
        problem = endpoint_problem(config.auth.jwks_url, HTTP_SCHEMES)
        if problem is not None:
            p.add(f"[auth] jwks_url {problem}", "auth", "jwks_url")
    if config.audit.retention_days < 1:
        p.add("[audit] retention_days must be at least 1", "audit", "retention_days")
    if config.audit.write_timeout_ms < 1:
        p.add("[audit] write_timeout_ms must be at least 1", "audit", "write_timeout_ms")
    if config.audit.head_file:
        head_file = Path(config.audit.head_file)
        if head_file.is_dir():
            p.add("[audit] head_file must be a file, not a directory", "audit", "head_file")
        elif not head_file.parent.is_dir():
            p.add(
                f"[audit] head_file: directory {head_file.parent} does not exist",
                "audit",
                "head_file",
            )
    for name in (
        "max_depth", "max_aliases", "max_tokens", "max_cost", "max_batch", "max_household"
    ):  # fmt: skip
        if getattr(config.limits, name) < 1:
            p.add(f"[limits] {name} must be at least 1", "limits", name)
    for name in ("rate_requests", "rate_cost"):
        if getattr(config.limits, name) < 0:
            p.add(f"[limits] {name} must be 0 (off) or more", "limits", name)
    if config.statistics.k < 1:
        p.add("[statistics] k must be at least 1", "statistics", "k")
    if config.limits.rate_window_s < 1:
        p.add("[limits] rate_window_s must be at least 1", "limits", "rate_window_s")
    p.check(lambda: _validate_certificates(config))
    p.check(lambda: validate_observability(config))
    persisted = config.persisted
    if persisted.mode not in PERSISTED_MODES:
        p.add(
            f'[persisted] mode must be "off", "apq" or "trusted"'
            f"{suggest(persisted.mode, PERSISTED_MODES)}",
            "persisted",
            "mode",
        )
    roles = persisted.allow_free_form_roles
    if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
        p.add(
            "[persisted] allow_free_form_roles must be a list of role names",
            "persisted",
            "allow_free_form_roles",
        )
    if persisted.apq_ttl_s < 1 or persisted.apq_max_entries < 1:
        p.add("[persisted] apq_ttl_s and apq_max_entries must be at least 1", "persisted")
    for agency in config.agencies.values():
        _validate_agency(agency, p)
    p.check(lambda: sources(config, complete=False))
    if own:
        p.raise_any()


def _validate_agency(agency: AgencyConfig, p: Problems) -> None:
    code = agency.code
    where = f"[agencies.{code}]"
    if agency.kind == "sql":
        if not agency.dsn:
            p.add(f"{where}: a sql agency needs dsn", "agencies", code, "dsn")
        else:
            dsn, origin = _dereference(agency.dsn)
            problem = dsn and endpoint_problem(dsn, POSTGRES_SCHEMES, host_required=False)
            if problem:
                p.add(f"{where}: dsn{origin} {problem}", "agencies", code, "dsn")
    if agency.kind in ("http", "graphql"):
        if not agency.url:
            what = "its subgraph's endpoint" if agency.kind == "graphql" else "its endpoint"
            article = "an" if agency.kind == "http" else "a"
            p.add(
                f"{where}: {article} {agency.kind} agency needs url ({what})",
                "agencies",
                code,
                "url",
            )
        elif (problem := endpoint_problem(agency.url, HTTP_SCHEMES)) is not None:
            p.add(f"{where}: url {problem}", "agencies", code, "url")
    if agency.timeout_ms < 1 or agency.max_concurrency < 1 or agency.retries < 0:
        p.add(
            f"{where}: timeout_ms and max_concurrency must be positive, retries not negative",
            "agencies",
            code,
        )
    if agency.cost_weight < 0:
        p.add(f"{where}: cost_weight must not be negative", "agencies", code, "cost_weight")
    p.check(lambda: _check_agency_urls(agency, where))


def _validate_certificates(config: Config) -> None:
    """[certificates] (docs/certificates.md); the keys themselves are resolved at start-up."""
    certificates = config.certificates
    keys = certificates.keys
    if not isinstance(keys, list | tuple) or not all(
        isinstance(k, str) and (k.startswith("env:") or k.startswith("file:")) for k in keys
    ):
        raise ConfigError(
            '[certificates] keys must be a list of references, "env:NAME" or "file:PATH"'
        )
    if not 1 <= certificates.ttl_days <= 3650:
        raise ConfigError("[certificates] ttl_days must be between 1 and 3650")
    if not 1 <= certificates.issues_per_day <= 1000:
        raise ConfigError("[certificates] issues_per_day must be between 1 and 1000")
    if not certificates.issuer.strip():
        raise ConfigError("[certificates] issuer must not be empty")


def _check_agency_urls(agency: AgencyConfig, where: str) -> None:
    """No credentials in an agency's URLs (never echoed); a positive ``max_response_bytes``
    for the HTTP-based kinds (``adapters.bounded``)."""
    try:
        check_no_userinfo(agency.url, f"{where} url")
        check_no_userinfo(agency.settings.get("oauth2_token_url"), f"{where} oauth2_token_url")
    except TrustError as exc:
        raise ConfigError(str(exc)) from None
    cap = agency.settings.get("max_response_bytes")
    positive = isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1
    if agency.kind in ("http", "graphql") and cap is not None and not positive:
        raise ConfigError(f"{where}: max_response_bytes must be a positive integer (bytes)")


def validate_observability(config: Config) -> None:
    """[log], [metrics] and [tracing] (docs/operations.md)."""
    if config.log.format not in LOG_FORMATS:
        raise ConfigError('[log] format must be "text" or "json"')
    if config.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("[log] level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    metrics = config.metrics
    if metrics.listen:
        host, _, port = metrics.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError('[metrics] listen must be "HOST:PORT" (an internal address)')
    if metrics.token_file:
        path = Path(metrics.token_file)
        if not path.is_file():
            raise ConfigError(f"[metrics] token_file: {path} does not exist")
    if metrics.max_operations < 1:
        raise ConfigError("[metrics] max_operations must be at least 1")
    endpoint = config.tracing.otlp_endpoint
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("[tracing] otlp_endpoint must be an http:// or https:// URL")


def cost_weights(config: Config) -> dict[str, int]:
    """Dataset -> the cost of one read of it: the ``cost_weight`` of the agency serving it
    (datasets no agency serves cost the default)."""
    found = sources(config, complete=False)
    return {ds: config.agencies[code].cost_weight for ds, code in found.items()}
