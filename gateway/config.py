"""Configuration: one TOML file, overridable by ``GATEWAY__SECTION__KEY`` variables.

Without a file the gateway runs its embedded demo (see ``gateway.demo.embedded``), which
builds a :class:`Config` in memory.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FILE = "gateway.toml"
ENV_FILE = "GATEWAY_CONFIG"
ENV_PREFIX = "GATEWAY__"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""


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
    max_cost: int = 5000
    max_batch: int = 100
    max_body_bytes: int = 65536
    request_timeout_ms: int = 10000  # agency retries never run past it
    # Off: __schema/__type are refused (BAD_REQUEST) and "Did you mean" hints are dropped.
    introspection: bool = True


@dataclass(frozen=True)
class PolicyConfig:
    file: str = "policy.toml"


@dataclass(frozen=True)
class AuditConfig:
    key: str = ""  # HMAC key for RRN hashes and the chain; keep it out of the database
    retention_days: int = 730
    enabled: bool = True
    write_timeout_ms: int = 5000  # a request waits this long for its records to commit


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
    # Everything in the agency's table, for adapters that take keys of their own.
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    agencies: Mapping[str, AgencyConfig] = field(default_factory=dict)
    source: Path | None = None


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "cache": CacheConfig,
    "auth": AuthConfig,
    "limits": LimitsConfig,
    "policy": PolicyConfig,
    "audit": AuditConfig,
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
    apply_env(raw, os.environ if environ is None else environ)
    return from_dict(raw, source=path)


def apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """``GATEWAY__LIMITS__MAX_DEPTH=8`` sets ``raw["limits"]["max_depth"] = 8``.

    Values are read as TOML literals when they parse as one (numbers, booleans,
    quoted strings, arrays) and taken as plain strings otherwise.
    """
    for name, value in environ.items():
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
        table[path[-1]] = _literal(value)


def _literal(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def from_dict(raw: Mapping[str, Any], source: Path | None = None) -> Config:
    unknown = set(raw) - set(_SECTIONS) - {"agencies"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    sections = {
        name: _build(cls, raw.get(name, {}), f"[{name}]") for name, cls in _SECTIONS.items()
    }
    agencies_raw = raw.get("agencies", {})
    if not isinstance(agencies_raw, dict):
        raise ConfigError("[agencies] must be a table of agency tables")
    agencies = {code: _agency(code, table) for code, table in agencies_raw.items()}
    config = Config(**sections, agencies=agencies, source=source)
    validate(config)
    return config


def _build(cls: type[Any], table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(table) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    for key, value in table.items():
        expected = fields[key].type
        if not _type_ok(expected, value):
            raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}")
    return cls(**table)


def _type_ok(expected: Any, value: Any) -> bool:
    kinds = {"str": str, "int": int, "bool": bool}
    kind = kinds.get(str(expected))
    if kind is None:
        return True
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


_AGENCY_KEYS = {f.name for f in dataclasses.fields(AgencyConfig)} - {"code", "settings"}


def _agency(code: str, table: Any) -> AgencyConfig:
    where = f"[agencies.{code}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    if "kind" not in table:
        raise ConfigError(f"{where}: kind is required (sql, http or a plugin name)")
    types = {f.name: f.type for f in dataclasses.fields(AgencyConfig)}
    known = {k: v for k, v in table.items() if k in _AGENCY_KEYS}
    for key, value in known.items():
        if not _type_ok(types[key], value):
            raise ConfigError(f"{where}: {key} must be {types[key]}, got {value!r}")
    return AgencyConfig(code=code, settings=dict(table), **known)


def validate(config: Config) -> None:
    if config.cache.backend not in ("memory", "redis"):
        raise ConfigError('[cache] backend must be "memory" or "redis"')
    if config.cache.backend == "redis" and not config.cache.url:
        raise ConfigError("[cache] url is required when backend is redis")
    if config.server.workers < 1:
        raise ConfigError("[server] workers must be at least 1")
    if config.audit.retention_days < 1:
        raise ConfigError("[audit] retention_days must be at least 1")
    if config.audit.write_timeout_ms < 1:
        raise ConfigError("[audit] write_timeout_ms must be at least 1")
    for name in ("max_depth", "max_aliases", "max_tokens", "max_cost", "max_batch"):
        if getattr(config.limits, name) < 1:
            raise ConfigError(f"[limits] {name} must be at least 1")
    for agency in config.agencies.values():
        where = f"[agencies.{agency.code}]"
        if agency.kind == "sql" and not agency.dsn:
            raise ConfigError(f"{where}: a sql agency needs dsn")
        if agency.kind == "http" and not agency.url:
            raise ConfigError(f"{where}: an http agency needs url")
        if agency.timeout_ms < 1 or agency.max_concurrency < 1 or agency.retries < 0:
            raise ConfigError(
                f"{where}: timeout_ms and max_concurrency must be positive, retries not negative"
            )
