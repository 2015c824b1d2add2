"""``gateway certificate verify FILE``: check a certificate, offline when given files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import Config, ConfigError

if TYPE_CHECKING:
    from gateway.certificates import Revocations


def add_parser(sub: Any, config_arg: Any) -> None:
    certificate = sub.add_parser("certificate", help="check certificates the gateway issued")
    actions = certificate.add_subparsers(required=True, metavar="ACTION")
    check = actions.add_parser(
        "verify",
        help="verify a certificate: genuine, expired, revoked or invalid (exit 0 if genuine)",
        description=(
            "Verify a certificate (a compact JWS, as issueCertificate returns it) and print "
            "its verdict and contents. With --jwks FILE (and --revocations FILE) nothing is "
            "fetched: it works offline. Without --jwks, the public keys of the configured "
            "[certificates] keys are used (the embedded demo's key without a config file). "
            "Exit 0: genuine; 1: expired, revoked or invalid."
        ),
    )
    check.add_argument("file", metavar="FILE", help="the certificate; - reads standard input")
    check.add_argument(
        "--jwks", metavar="FILE|URL", help="the published keys (/.well-known/jwks.json)"
    )
    check.add_argument(
        "--revocations",
        metavar="FILE|URL",
        help="the signed revocation list (/.well-known/revocations.jwt); not checked without it",
    )
    config_arg(check)
    check.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    # Imported here: every other command starts without the JOSE machinery.
    from gateway.certificates import Outcome, VerificationError, read_revocations, verify

    token = sys.stdin.read() if args.file == "-" else _read(args.file, "FILE")
    if args.jwks:
        try:
            jwks = json.loads(_read(args.jwks, "--jwks"))
        except ValueError:
            raise ConfigError(f"--jwks {args.jwks}: not JSON") from None
        if not isinstance(jwks, dict):
            raise ConfigError(f"--jwks {args.jwks}: not a JWKS object")
    else:
        jwks = _configured_jwks(args)
    revocations: Revocations | None = None
    if args.revocations:
        try:
            revocations = read_revocations(_read(args.revocations, "--revocations"), jwks)
        except VerificationError as exc:
            raise ConfigError(f"--revocations {args.revocations}: {exc}") from None
    verdict = verify(token, jwks, revocations)
    print(f"{verdict.outcome.value}: {verdict.reason}")
    if revocations is not None:
        print(f"revocation list issued at {revocations.issued_at} (epoch seconds)")
    if verdict.claims is not None:
        print(json.dumps(verdict.claims, indent=2, ensure_ascii=False))
    return 0 if verdict.outcome is Outcome.GENUINE else 1


def _read(source: str, what: str) -> str:
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ConfigError(f"{what} {source}: {type(exc).__name__}") from None
        return response.text
    try:
        return Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {source}: cannot read it ({type(exc).__name__})") from None


def _configured_jwks(args: argparse.Namespace) -> dict[str, Any]:
    from gateway import config as config_module
    from gateway.runtime import certificates_of

    path = config_module.find_file(args.config)
    if path is not None:
        config = config_module.load(path)
    else:
        from gateway.demo.embedded import demo_certificates

        config = Config(certificates=demo_certificates())
    keys = certificates_of(config).keys
    if not keys.keys:
        raise ConfigError("no --jwks given and [certificates] keys is empty")
    return keys.jwks()
