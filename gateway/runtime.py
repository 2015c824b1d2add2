"""Everything a running gateway holds: built from config at start, opened in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import asyncpg
import strawberry

from gateway import policy as policy_module
from gateway.agencies import Agencies, check_adapters
from gateway.audit import AuditKeys, AuditLog
from gateway.auth import Authenticator
from gateway.cache import AgencyCache
from gateway.certificate_keys import CertificateKeys
from gateway.certificates import Certificates
from gateway.config import Config, ConfigError, Problems, sources, suggest
from gateway.consent import Consents
from gateway.graphql_schema import (
    PURPOSES,
    agency_fields,
    describe_access,
    resident_types,
    schema_fields,
    schema_for,
)
from gateway.policy import Policy
from gateway.principal import Principal

DEMO_POLICY = Path(str(files("gateway.demo") / "policy.toml"))


@dataclass
class Runtime:
    config: Config
    agencies: Agencies
    policy: Policy
    keys: AuditKeys
    authenticator: Authenticator
    certificates: Certificates
    db: asyncpg.Pool | None = None
    audit: AuditLog | None = None
    consents: Consents | None = field(default=None)

    @property
    def audit_enabled(self) -> bool:
        return self.config.audit.enabled

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller, from a verified token whose roles and agency the policy admits
        (401 for a bad token, 403 for an unknown role or an agency its roles may not claim)."""
        principal = await self.authenticator.authenticate(authorization)
        self.policy.admit(principal.roles, principal.agency)
        return principal


def policy_path(config: Config) -> Path:
    path = Path(config.policy.file)
    if not path.is_absolute() and config.source is not None:
        path = config.source.parent / path
    return path


def load_policy(config: Config, schema: strawberry.Schema | None = None) -> Policy:
    """The policy, checked against the schema it will guard."""
    schema = schema or schema_for(config)
    return policy_module.load(
        policy_path(config),
        schema_fields(schema),
        PURPOSES,
        resident_types=resident_types(schema),
        consentable=agency_fields(schema),
        contributed=getattr(schema, "contributed", None),
    )


def check(config: Config, schema: strawberry.Schema | None = None) -> Policy:
    """Everything that must hold before serving; raises ConfigError listing every problem."""
    p = Problems(config.origins)
    if not config.database.url:
        p.add("[database] url is required: consents and the audit trail live there")
    if not config.audit.key:
        p.add("[audit] key is required (a long random secret kept out of the database)")
    elif len(config.audit.key) < 32:
        p.add("[audit] key must be at least 32 characters", "audit", "key")
    if config.auth.secret and len(config.auth.secret) < 32:
        p.add("[auth] secret must be at least 32 characters", "auth", "secret")
    if not config.auth.secret and not config.auth.jwks_url:
        p.add("[auth] needs secret (development) or jwks_url (production)")
    policy: list[Policy] = []
    p.check(lambda: policy.append(load_policy(config, schema)))
    p.check(lambda: sources(config))  # every dataset has one agency (or is declared unserved)
    p.check(lambda: check_adapters(config))  # ... whose adapter is installed and serves it
    if policy:
        p.check(lambda: check_source_agencies(config, policy[0]))
    p.raise_any()
    return policy[0]


def check_source_agencies(config: Config, policy: Policy) -> None:
    """Policy entries that must name a configured source agency do: the agencies of roles
    granted ``Events.invalidate`` (an agency's system drops cached records of that agency,
    so its code must be one of ``[agencies.<code>]``). Other roles' ``agencies`` are the
    principals' own agencies (consumers such as ``welfare``) and are not checked here."""
    for role in policy.roles.values():
        if "Events.invalidate" not in role.operations or role.agencies is None:
            continue
        stray = sorted(role.agencies - set(config.agencies))
        if stray:
            raise ConfigError.of(
                [
                    f"{policy.source}: [roles.{role.name}] may call Events.invalidate for "
                    f"{code}{suggest(code, config.agencies)}, which no [agencies.<code>] "
                    f"configures (configured: {', '.join(sorted(config.agencies)) or 'none'})"
                    for code in stray
                ]
            )


def build(config: Config, schema: strawberry.Schema) -> Runtime:
    policy = check(config, schema)
    describe_access(schema, policy)
    return Runtime(
        config=config,
        agencies=Agencies(config.agencies, AgencyCache(config.cache)),
        policy=policy,
        keys=AuditKeys(config.audit.key),
        authenticator=Authenticator(config.auth),
        certificates=certificates_of(config),
    )


def certificates_of(config: Config) -> Certificates:
    """The issuing service, its keys resolved (ConfigError naming a reference that fails)."""
    cfg = config.certificates
    return Certificates(
        CertificateKeys.from_references(cfg.keys), cfg.issuer, cfg.ttl_days, cfg.issues_per_day
    )
