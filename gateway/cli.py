"""The ``gateway`` command: serve, seed, schema, check-config, new-adapter, demo-agency."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway import certificate_cli
from gateway import config as config_module
from gateway.config import Config, ConfigError

if TYPE_CHECKING:
    from gateway.graphiql import DemoRole

SAMPLE_QUERY = """\
{{
  resident(rrn: "{rrn}", purpose: WELFARE_ELIGIBILITY) {{
    rrn name birthDate sex status
    address {{ region city street postalCode }}
    household {{
      size head {{ name }}
      members {{ name relationship insurance {{ insuredType }} taxes {{ year reportedIncome }} }}
    }}
    insurance {{ insuredType monthlyPremium dependents }}
    taxes(years: [2024, 2025]) {{ year reportedIncome taxAssessed arrears }}
    pension {{ subscriberType monthsContributed expectedMonthlyBenefit monthlyBenefit }}
    militaryService {{ status branch enlistedOn dischargedOn }}
  }}
}}"""


class StartupError(Exception):
    """Serving cannot start (port in use, database unreachable); one line, no traceback."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("resident-gateway")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"gateway: configuration error: {problem}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Resident Gateway: one GraphQL endpoint over many agencies."
    )
    parser.add_argument("--version", action="version", version=f"gateway {version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve the gateway (the embedded demo when there is no config)",
        description=(
            "Serve /graphql. With gateway.toml (or --config / $GATEWAY_CONFIG) use the "
            "configured databases and agencies; without one, start the embedded demo: a "
            "PostgreSQL kept under your cache directory, seeded on first run, and the demo "
            "HTTP agencies."
        ),
    )
    _config_arg(serve)
    serve.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from config: 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default from config: 1)")
    serve.add_argument(
        "--demo-residents",
        type=int,
        default=None,
        help="residents to seed on the demo's first run (default 2000)",
    )
    serve.set_defaults(handler=cmd_serve)

    seed = sub.add_parser(
        "seed",
        help="write deterministic synthetic residents into the demo agency tables",
        description="Create the demo agency schemas and fill them with synthetic data (COPY).",
    )
    seed.add_argument("--residents", type=int, default=10_000, help="how many (default 10000)")
    seed.add_argument("--dsn", help="PostgreSQL DSN (default: [agencies.registry] dsn)")
    seed.add_argument("--seed", type=int, default=20240101, help="random seed (default 20240101)")
    seed.add_argument("--no-progress", action="store_true", help="no progress bar")
    _config_arg(seed)
    seed.set_defaults(handler=cmd_seed)

    token = sub.add_parser(
        "token",
        help="print a development token (HS256, signed with [auth] secret)",
        description=(
            "Print a signed development token. Without a config file it signs with the "
            "embedded demo's secret, so its tokens work against `gateway serve`."
        ),
    )
    token.add_argument("--role", action="append", required=True, help="role (repeatable)")
    token.add_argument("--rrn", help="the citizen's own RRN (for the citizen role)")
    token.add_argument("--agency", help="the principal's agency code (consents name it)")
    token.add_argument("--sub", help="principal id (default: dev-<role>)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds it is valid (default 3600)")
    _config_arg(token)
    token.set_defaults(handler=cmd_token)

    audit = sub.add_parser("audit", help="check, prune, repair or anchor the audit trail")
    audit_sub = audit.add_subparsers(required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify",
        help="walk the hash chain; exit 1 naming every changed, deleted or inserted row",
        description=(
            "Walk the hash chain from the anchor the chain itself states (its newest purge or "
            "repair row). Exit 1 naming every changed, deleted or inserted row, a head that was "
            "rewritten and an anchor no purge row records; list recorded repairs and the rows "
            "they record MISSING (NOTE lines: exit 0, but never 'intact' while rows are "
            "recorded missing)."
        ),
    )
    verify.add_argument(
        "--expect",
        metavar="SEQ:HASH",
        help="a head recorded outside the database earlier (`gateway audit head`; default: "
        "the one in [audit] head_file, if set): exit 1 unless that row is still part of the "
        "chain or an AUDIT_PURGE row covers it (catches cut tails and a database rolled back "
        "to an older copy)",
    )
    _config_arg(verify)
    verify.set_defaults(handler=cmd_audit_verify)
    purge = audit_sub.add_parser(
        "purge",
        help="delete records older than [audit] retention_days (the chain stays valid)",
        description=(
            "Delete the oldest records past [audit] retention_days: only the verified prefix "
            "of the chain, in order. Exit 1 if it stopped early at a row that fails "
            "verification or is out of order (tampering)."
        ),
    )
    _config_arg(purge)
    purge.set_defaults(handler=cmd_audit_purge)
    repair = audit_sub.add_parser(
        "repair",
        help="record a chain head that cannot be trusted in the chain, and re-seal it",
        description=(
            "When the chain head's MAC is wrong or missing (rows cut from the end, the head "
            "rewritten or blanked), or an older genuine head was restored (the head in [audit] "
            "head_file or --expect is no longer in the chain), the gateway withholds resident "
            "data. This verifies the chain, reports what it found, appends a chain row (purpose "
            "AUDIT_REPAIR) stating the head found, the anchor the chain itself states (never "
            "the head's), the last verifiable row and every row missing, re-seals the head and "
            "updates the head file: `gateway audit verify` lists that repair ever after. "
            "Running gateways resume on their next write."
        ),
    )
    repair.add_argument("--by", help="who repairs, recorded in the chain (default: the login name)")
    repair.add_argument(
        "--expect",
        metavar="SEQ:HASH",
        help="a head recorded outside the database (default: the one in [audit] head_file): "
        "if it is no longer in the chain (an older head restored), record that too",
    )
    _config_arg(repair)
    repair.set_defaults(handler=cmd_audit_repair)
    head = audit_sub.add_parser(
        "head",
        help="print the chain head (SEQ:HASH and its MAC) to keep outside the database",
        description=(
            "Print the chain head: the first line is SEQ:HASH, for `gateway audit verify "
            "--expect`. Store it outside the database (a ticket, a log shipper, another "
            "system) now and then. Exit 1 if the head is not sealed."
        ),
    )
    _config_arg(head)
    head.set_defaults(handler=cmd_audit_head)

    persisted = sub.add_parser(
        "persisted", help="build or check a trusted-documents manifest ([persisted] manifest)"
    )
    persisted_sub = persisted.add_subparsers(required=True, metavar="ACTION")
    build = persisted_sub.add_parser(
        "build",
        help="write a manifest from .graphql files, each operation validated",
        description=(
            "Read .graphql/.gql files (directories are searched), take each named operation "
            "with the fragments it uses, validate it against the schema (and the configured "
            "depth, alias and token limits) and write an Apollo persisted-query manifest. "
            "Exit 1 naming every operation that does not validate; nothing is written then."
        ),
    )
    build.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help=".graphql files or dirs")
    build.add_argument(
        "--out", default="persisted-documents.json", help="(default: persisted-documents.json)"
    )
    _config_arg(build)
    build.set_defaults(handler=cmd_persisted_build)
    check_manifest = persisted_sub.add_parser(
        "check",
        help="validate every document of a manifest against the current schema",
        description=(
            "Validate every document of a manifest (Apollo's format or a plain {id: document} "
            "map) against the current schema; exit 1 naming each one that no longer validates."
        ),
    )
    check_manifest.add_argument("manifest", metavar="MANIFEST")
    _config_arg(check_manifest)
    check_manifest.set_defaults(handler=cmd_persisted_check)

    schema = sub.add_parser(
        "schema",
        help="print the GraphQL schema (SDL or introspection JSON), or diff two schemas",
        description=(
            "Print the schema this configuration serves (without one: the embedded demo's), "
            "each field's description ending with the policy's access line. `gateway schema "
            "diff OLD [NEW]` lists the changes from OLD to NEW (default: the current schema)."
        ),
    )
    schema.add_argument(
        "--format",
        choices=["sdl", "json"],
        default="sdl",
        help="sdl (default) or json: the introspection result a client gets",
    )
    _config_arg(schema)
    schema.set_defaults(handler=cmd_schema)
    schema_sub = schema.add_subparsers(metavar="ACTION")
    schema_diff = schema_sub.add_parser(
        "diff",
        help="list the changes between two schemas, breaking and dangerous ones flagged",
        description=(
            "Compare two schemas, each an SDL file or an introspection result (.json, as "
            "`gateway schema --format json` writes). One line per change: BREAKING (existing "
            "operations fail), DANGEROUS (they may behave differently) or SAFE. Exit 1 when "
            "any change is breaking, 0 otherwise, 2 when a file is not a schema."
        ),
    )
    schema_diff.add_argument("old", metavar="OLD", help="the schema clients use now")
    schema_diff.add_argument(
        "new", metavar="NEW", nargs="?", help="the schema to compare (default: the current one)"
    )
    _config_arg(schema_diff)
    schema_diff.set_defaults(handler=cmd_schema_diff)

    certificate_cli.add_parser(sub, _config_arg)

    check = sub.add_parser(
        "check-config",
        help="validate the configuration, reach each agency and exit",
        description=(
            "Validate the configuration and report every problem at once (exit 2). Then "
            "connect to the database and each agency and print a table of their states "
            "(endpoints without secrets); an unreachable one is a line of the table, not an "
            "error, unless --strict."
        ),
    )
    check.add_argument(
        "--no-connect", action="store_true", help="validate only; connect to nothing"
    )
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when the database or an agency is down"
    )
    check.add_argument(
        "--timeout", type=float, default=3.0, help="seconds per connection (default 3)"
    )
    _config_arg(check)
    check.set_defaults(handler=cmd_check_config)

    new_adapter = sub.add_parser(
        "new-adapter",
        help="scaffold an installable agency adapter package",
        description=(
            "Write a separate, installable package for a new agency adapter: pyproject.toml "
            "with its entry point under gateway.adapters, the adapter class, a record "
            "dataclass, a policy snippet granting its fields, a compliance test "
            "(adapters.testing) and a README. It passes its own tests as generated."
        ),
    )
    new_adapter.add_argument(
        "name", metavar="NAME", help="adapter kind and dataset name, an agency code: land_registry"
    )
    new_adapter.add_argument(
        "--dir", metavar="PATH", help="where to write it (default: ./gateway-adapter-NAME)"
    )
    new_adapter.set_defaults(handler=cmd_new_adapter)

    agency = sub.add_parser(
        "demo-agency",
        help="serve one demo HTTP agency (nts or mma) over its tables",
        description="Serve one demo HTTP agency. It answers only requests whose Authorization "
        "header equals $GATEWAY_DEMO_AGENCY_AUTH (e.g. 'Bearer <random>'); give the gateway "
        'auth_header = "env:GATEWAY_DEMO_AGENCY_AUTH" in that agency\'s table.',
    )
    agency.add_argument("--agency", choices=["nts", "mma"], required=True)
    agency.add_argument("--dsn", required=True, help="PostgreSQL DSN holding its tables")
    agency.add_argument("--host", default="127.0.0.1")
    agency.add_argument("--port", type=int, default=0, help="0 lets the OS pick (default)")
    agency.add_argument("--delay-ms", type=int, default=0, help="answer this much later")
    agency.add_argument(
        "--fault",
        choices=["ok", "error", "garbage"],
        default="ok",
        help="misbehave on purpose: HTTP 500s or bodies that are not a batch (default ok)",
    )
    agency.set_defaults(handler=cmd_demo_agency)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $GATEWAY_CONFIG, ./gateway.toml)"
    )


def _load(args: argparse.Namespace) -> Config | None:
    path = config_module.find_file(args.config)
    return None if path is None else config_module.load(path)


def _load_or_demo(args: argparse.Namespace) -> Config:
    """The config file, or the embedded demo's settings (database included, if it runs)."""
    config = _load(args)
    if config is not None:
        return config
    from gateway.demo.embedded import demo_config

    return demo_config()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from gateway import logs, metrics
    from gateway.app import create_app

    logs.configure()
    config = _load(args)
    if config is not None:
        logs.configure(config.log)
        server = _server(config, args)
        asyncio.run(_reach_database(config.database.url))
        line = f"Resident Gateway on http://{server.host}:{server.port}/graphql"
        if server.workers > 1:
            assert config.source is not None
            os.environ[config_module.ENV_FILE] = str(config.source.resolve())
            with metrics.serving(config, server.workers):  # before the workers start
                return _run("gateway.cli:app_from_env", server, lambda: print(line, flush=True))
        with metrics.serving(config, 1):
            return _run(create_app(config), server, lambda: print(line, flush=True))

    from gateway.demo.embedded import DEMO_RESIDENTS, data_dir, embedded_demo

    # Refuse bad [server] overrides before starting anything (the demo's database takes a
    # while); the others are applied to, and checked with, the demo's own settings below.
    server_env = {k: v for k, v in os.environ.items() if k.startswith("GATEWAY__SERVER__")}
    demo_server = _server(config_module.overlay(config_module.Config(), server_env), args)
    residents = args.demo_residents or DEMO_RESIDENTS
    print(f"No config file: starting the embedded demo (data in {data_dir()})", flush=True)
    # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default
    # action would then kill the process before the demo's PostgreSQL and agency processes
    # are stopped. Turned into KeyboardInterrupt, it unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    with embedded_demo(demo_server.host, demo_server.port, residents) as (demo_config, rrn):
        demo_config = config_module.overlay(demo_config, os.environ)
        demo_config = dataclasses.replace(demo_config, server=demo_server)
        host, port = demo_server.host, demo_server.port
        tokens = demo_tokens(demo_config, rrn)
        # The page is open to whoever reaches the port: it carries the demo's tokens only
        # while the demo listens on this machine alone.
        picker = demo_roles(tokens) if _loopback(host) else None

        def banner() -> None:
            url = f"http://{host}:{port}/graphql"
            workers = f" ({demo_server.workers} workers)" if demo_server.workers > 1 else ""
            print(
                f"\nGraphiQL: {url}{workers}\n\nTry this query there (a real demo resident):\n\n"
                f"{SAMPLE_QUERY.format(rrn=rrn)}\n\n"
                "Every request needs a token: in GraphiQL pick a role at the top (it fills the\n"
                "Authorization header), or use one of these elsewhere (valid 12 hours;\n"
                "`gateway token --role ROLE` makes more):\n",
                flush=True,
            )
            for role, token in tokens.items():
                print(f"  {role:<25} {token}")
            print(
                "\nWith the welfare_officer token the query above shows field-level "
                "authorization:\nmilitaryService is FORBIDDEN for welfare, and taxes need the "
                "resident's consent.\nWith the citizen token (the same resident) try:\n"
                '  mutation { grantConsent(purpose: WELFARE_ELIGIBILITY, agency: "welfare") '
                "{ id } }\n"
                "  { me { name taxes { year } } myAccessLog { edges { node { agency purpose fields"
                " denied } } } }\n"
                "  mutation { issueCertificate(kind: RESIDENT_REGISTRATION) { id expiresAt token"
                " } }\n"
                f"and check the token at http://{host}:{port}/verify (docs/certificates.md).\n"
                "\nPress Ctrl-C to stop.\n",
                flush=True,
            )
            if picker is None:
                print(f"GraphiQL has no role picker: {host} is reachable from other machines.\n")

        logs.configure(demo_config.log)
        if demo_server.workers > 1:
            state = _save_demo_state(demo_config, picker, rrn)
            try:
                with metrics.serving(demo_config, demo_server.workers):
                    return _run("gateway.cli:demo_app_from_env", demo_server, banner)
            finally:
                state.unlink(missing_ok=True)
        app = create_app(demo_config, demo_roles=picker, sample_rrn=rrn)
        with metrics.serving(demo_config, 1):
            return _run(app, demo_server, banner)


def _server(config: Config, args: argparse.Namespace) -> config_module.ServerConfig:
    """The config's [server] with the command line's --host/--port/--workers over it."""
    import dataclasses

    server = dataclasses.replace(
        config.server,
        **{k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None},
    )
    problems = config_module.Problems()
    if (problem := config_module.port_problem(server.port)) is not None:
        problems.add(f"--port: {problem}")
    if server.workers < 1:
        problems.add("--workers must be at least 1")
    problems.raise_any()
    return server


async def _reach_database(url: str) -> None:
    """Connect once to [database] url: an unreachable or refusing database is one line."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=10)
    except Exception as exc:  # every reason is reported the same way, as one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StartupError(
            f"the database at [database] url ({_safe_endpoint(url)}) is unreachable: {reason}"
        ) from None
    await conn.close()


def _safe_endpoint(url: str) -> str:
    """scheme://host:port/path of a URL or DSN, without user, password or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "unparsable"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _bind(host: str, port: int) -> Any:
    """The listening socket, bound before anything says the gateway is up."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog: connections queue from now on
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _run(app: Any, server: config_module.ServerConfig, banner: Callable[[], None]) -> int:
    """Bind, print the banner, serve (``server.workers`` processes when ``app`` is an import
    string naming a factory). A failing start-up is one line on stderr and exit 1."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    workers = server.workers if isinstance(app, str) else 1
    uv_config = uvicorn.Config(
        app if isinstance(app, str) else QuietStartup(app),
        factory=isinstance(app, str),
        host=server.host,
        port=server.port,
        workers=workers,
        access_log=False,
        log_config=None,  # our handler, with the RRN-masking filter
    )
    sock = _bind(server.host, server.port)
    banner()
    # uvicorn re-raises the SIGINT that stopped it once it has shut down (as uvicorn.run
    # does, a clean stop then exits 0).
    if workers > 1:
        with contextlib.suppress(KeyboardInterrupt):
            Multiprocess(uv_config, sockets=[sock]).run()
        return 0
    uv_server = uvicorn.Server(uv_config)
    try:
        uv_server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    except SystemExit:  # uvicorn's exit after a failed start-up (QuietStartup said why)
        return 1
    return 0 if uv_server.started else 1


class QuietStartup:
    """ASGI wrapper: a failing lifespan start-up prints one line (``gateway: cannot start:
    ...``) instead of uvicorn's traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed":
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"gateway: cannot start: {reason}", file=sys.stderr, flush=True)
            raise


def app_from_env() -> Any:
    """Factory for several workers: the config in $GATEWAY_CONFIG (gateway.app)."""
    from gateway import app

    return QuietStartup(app.app_from_env())


DEMO_STATE = "GATEWAY_DEMO_STATE"


def _save_demo_state(config: Config, picker: Any, rrn: str) -> Any:
    """What the demo's worker processes need (its Config, tokens, sample RRN), in a file only
    this user can read, named by $GATEWAY_DEMO_STATE."""
    import pickle

    from gateway.demo.embedded import cache_dir

    path = cache_dir() / f"demo-state-{os.getpid()}.pickle"
    path.touch(mode=0o600)
    path.write_bytes(pickle.dumps((config, picker, rrn)))
    os.environ[DEMO_STATE] = str(path)
    return path


def demo_app_from_env() -> Any:
    """Factory for the embedded demo's worker processes."""
    import pickle
    from pathlib import Path

    from gateway import logs
    from gateway.app import create_app

    logs.configure()
    # Written by this user's parent process (_save_demo_state), readable by this user only.
    config, picker, rrn = pickle.loads(Path(os.environ[DEMO_STATE]).read_bytes())  # noqa: S301
    return QuietStartup(create_app(config, demo_roles=picker, sample_rrn=rrn))


def cmd_seed(args: argparse.Namespace) -> int:
    from gateway.demo.seed import seed

    dsn = args.dsn
    if not dsn:
        config = _load(args)
        registry = config.agencies.get("registry") if config else None
        if registry is None or not registry.dsn:
            raise ConfigError("give --dsn, or a config with [agencies.registry] dsn")
        dsn = registry.dsn
    if args.residents < 1:
        raise ConfigError("--residents must be at least 1")
    summary = asyncio.run(seed(dsn, args.residents, seed=args.seed, progress=not args.no_progress))
    if args.no_progress:
        print(
            f"seeded {summary.residents:,} residents in {summary.households:,} households "
            f"in {summary.seconds:.1f} s"
        )
    return 0


def _served_schema(args: argparse.Namespace) -> Any:
    """The schema the configuration serves (the demo's without one), its descriptions
    carrying the policy's access lines as GraphiQL shows them."""
    from gateway import policy as policy_module
    from gateway.graphql_schema import (
        PURPOSES,
        agency_fields,
        build_schema,
        describe_access,
        resident_types,
        schema_fields,
        schema_for,
    )
    from gateway.runtime import DEMO_POLICY, load_policy

    config = _load(args)
    if config is None:
        schema = build_schema()
        policy = policy_module.load(
            DEMO_POLICY,
            schema_fields(schema),
            PURPOSES,
            resident_types=resident_types(schema),
            consentable=agency_fields(schema),
        )
    else:
        schema = schema_for(config)
        policy = load_policy(config, schema)
    describe_access(schema, policy)
    return schema


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from gateway.schema_diff import introspection

    schema = _served_schema(args)
    if args.format == "json":
        print(json.dumps(introspection(schema._schema), indent=2, ensure_ascii=False))
    else:
        print(schema.as_str())
    return 0


def cmd_schema_diff(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.schema_diff import Severity, diff, load

    old = load(Path(args.old))
    new = load(Path(args.new)) if args.new else _served_schema(args)._schema
    changes = diff(old, new)
    for change in changes:
        print(change.line())
    counts = {s: sum(c.severity is s for c in changes) for s in Severity}
    print(
        f"{len(changes)} changes: {counts[Severity.BREAKING]} breaking, "
        f"{counts[Severity.DANGEROUS]} dangerous, {counts[Severity.SAFE]} safe"
    )
    return 1 if counts[Severity.BREAKING] else 0


def _limits_schema(args: argparse.Namespace) -> Any:
    from gateway.graphql_schema import build_schema

    config = _load(args)
    return build_schema(config.limits if config is not None else None)


def cmd_persisted_build(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from gateway.persisted import apollo_manifest, build_operations, graphql_files

    files = graphql_files(Path(p) for p in args.paths)
    operations, problems = build_operations(_limits_schema(args), files)
    for problem in problems:
        print(f"gateway: {problem}", file=sys.stderr)
    if problems:
        return 1
    if not operations:
        print("gateway: no named operations found", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(apollo_manifest(operations), indent=2) + "\n")
    print(f"{args.out}: {len(operations)} operations from {len(files)} files")
    return 0


def cmd_persisted_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.persisted import check_manifest, load_manifest

    manifest = load_manifest(Path(args.manifest))
    problems = check_manifest(_limits_schema(args), manifest)
    for problem in problems:
        print(f"gateway: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.manifest}: {len(manifest)} documents valid")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        print("no config file: the embedded demo would run")
        return 0
    from gateway.graphql_schema import schema_fields, schema_for
    from gateway.runtime import certificates_of, check

    schema = schema_for(config)
    policy = check(config, schema)  # raises ConfigError: one line naming the problem
    certificates_of(config)  # the certificate signing keys' references resolve
    for dataset in config.sources.unserved:
        print(f"note: no agency serves {dataset} ([sources] unserved): its fields answer "
              "AGENCY_UNAVAILABLE")  # fmt: skip
    from gateway.metrics import open_to_all

    if open_to_all(config.metrics):
        print(
            f"note: [metrics] listen {config.metrics.listen} serves /metrics without a token"
            " on every interface: set [metrics] token_file, or bind an internal address"
        )
    unreadable = policy.unreadable(schema_fields(schema))
    theirs = [name for name in unreadable if name in schema.contributed]
    ours = [name for name in unreadable if name not in schema.contributed]
    if ours:
        print(f"note: no role may read: {', '.join(ours)}")
    if theirs:
        print(f"note: no role may read these fields contributed by agencies (wildcards do not "
              f"grant them; name each one to grant it): {', '.join(theirs)}")  # fmt: skip
    if args.no_connect:
        print(f"{config.source}: ok ({len(config.agencies)} agencies)")
        return 0
    rows = asyncio.run(_probe(config, args.timeout))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[3])  # fmt: skip
    down = sum(not row[3].startswith("up") for row in rows[1:])
    if down:
        print(f"note: {down} of {len(rows) - 1} endpoints could not be reached")
    print(f"{config.source}: ok ({len(config.agencies)} agencies)")
    return 1 if args.strict and down else 0


async def _probe(config: Config, wait_s: float) -> list[tuple[str, str, str, str]]:
    """(name, kind, endpoint without secrets, state) for the store, the cache and each
    agency, reached concurrently, each within ``wait_s`` seconds."""
    import time

    import asyncpg

    from adapters.trust import redact
    from gateway.agencies import adapter_classes, adapter_settings

    async def timed(reach: Callable[[], Awaitable[object]]) -> str:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(reach(), wait_s)
        except TimeoutError:
            return f"DOWN: no answer within {wait_s:g} s"
        except Exception as exc:  # any failure is a state to show, as one line
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"DOWN: {redact(text) or type(exc).__name__}"
        return f"up ({(time.perf_counter() - started) * 1000:.0f} ms)"

    async def database() -> None:
        conn = await asyncpg.connect(config.database.url, timeout=wait_s)
        await conn.close()

    async def cache() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(config.cache.url, socket_connect_timeout=wait_s)
        try:
            await client.ping()
        finally:
            await client.aclose()

    kinds = adapter_classes()

    def agency(code: str) -> Callable[[], Awaitable[object]]:
        async def reach() -> None:
            agency_config = config.agencies[code]
            async with kinds[agency_config.kind](code, adapter_settings(agency_config)) as adapter:
                await adapter.ping()

        return reach

    rows = [("AGENCY", "KIND", "ENDPOINT", "STATE")]
    probes: list[tuple[tuple[str, str, str], Callable[[], Awaitable[object]]]] = [
        (("(store)", "postgresql", _safe_endpoint(config.database.url)), database)
    ]
    if config.cache.backend == "redis":
        probes.append((("(cache)", "redis", _safe_endpoint(config.cache.url)), cache))
    for code, agency_config in config.agencies.items():
        target = agency_config.url or agency_config.dsn
        shown = target if target.startswith(("env:", "file:")) else _safe_endpoint(target)
        probes.append(((code, agency_config.kind, shown), agency(code)))
    states = await asyncio.gather(*(timed(reach) for _, reach in probes))
    rows += [(*names, state) for (names, _), state in zip(probes, states, strict=True)]
    return rows


def cmd_new_adapter(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.agencies import adapter_classes
    from gateway.scaffold import check_name, scaffold

    check_name(args.name)
    directory = Path(args.dir or f"gateway-adapter-{args.name.replace('_', '-')}")
    written = scaffold(args.name, directory, frozenset(adapter_classes()))
    print(f"wrote {len(written)} files to {directory}/; next:")
    print(f"  cd {directory} && pip install -e '.[test]' && pytest")
    return 0


def cmd_demo_agency(args: argparse.Namespace) -> int:
    from gateway.demo.agencies import serve

    serve(
        args.agency,
        args.dsn,
        host=args.host,
        port=args.port,
        delay_ms=args.delay_ms,
        fault=args.fault,
    )
    return 0


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_tokens(config: Config, rrn: str) -> dict[str, str]:
    """A 12-hour token for each demo role (the citizen's is the sample resident's)."""
    from gateway.auth import issue_token
    from gateway.demo.embedded import DEMO_ROLES

    return {
        role: issue_token(
            config.auth,
            sub=f"demo-{role}",
            roles=[role],
            agency=agency,
            rrn=rrn if role == "citizen" else None,
            ttl_s=12 * 3600,
        )
        for role, agency in DEMO_ROLES.items()
    }


def demo_roles(tokens: dict[str, str]) -> list[DemoRole]:
    """The GraphiQL page's role picker: each demo role, its description and its token."""
    import tomllib

    from gateway.graphiql import DemoRole
    from gateway.runtime import DEMO_POLICY

    roles = tomllib.loads(DEMO_POLICY.read_text())["roles"]
    return [
        DemoRole(role, str(roles.get(role, {}).get("description", "")), token)
        for role, token in tokens.items()
    ]


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import issue_token

    config = _load(args)
    if config is None:
        from gateway.demo.embedded import demo_auth

        auth = demo_auth()
    else:
        auth = config.auth
    if args.ttl < 1:
        raise ConfigError("--ttl must be at least 1 second")
    _check_token_claims(config, args.sub or f"dev-{args.role[0]}", args.role, args.agency)
    try:
        token = issue_token(
            auth,
            sub=args.sub or f"dev-{args.role[0]}",
            roles=args.role,
            agency=args.agency,
            rrn=args.rrn,
            ttl_s=args.ttl,
        )
    except ValueError as exc:
        raise ConfigError(f"--rrn: {exc}") from None
    print(token)
    return 0


def _check_token_claims(
    config: Config | None, sub: str, roles: list[str], agency: str | None
) -> None:
    """Refuse to print a token the gateway would refuse: bad claims, a role the policy does
    not know, or an agency its roles may not claim."""
    from gateway import policy as policy_module
    from gateway.auth import principal_from_claims
    from gateway.errors import GatewayError
    from gateway.graphql_schema import (
        PURPOSES,
        build_schema,
        resident_types,
        schema_fields,
        schema_for,
    )
    from gateway.runtime import DEMO_POLICY, policy_path

    path = DEMO_POLICY if config is None else policy_path(config)
    # The configuration's schema, contributed fields included: its policy may grant them.
    schema = build_schema() if config is None else schema_for(config)
    policy = policy_module.load(
        path, schema_fields(schema), PURPOSES, resident_types=resident_types(schema)
    )
    claims = {"sub": sub, "roles": roles} | ({"agency": agency} if agency else {})
    try:
        principal = principal_from_claims(claims)
        policy.admit(principal.roles, principal.agency)
    except GatewayError as exc:
        raise ConfigError(exc.message) from None


def _audit_conn(
    args: argparse.Namespace, run: Callable[[Any, Any], Awaitable[int]], config: Any = None
) -> int:
    """Run ``run(conn, keys)`` on one connection to the configured store."""
    import asyncpg

    from gateway.audit import AuditKeys

    config = config or _load_or_demo(args)

    async def main() -> int:
        conn = await asyncpg.connect(config.database.url)
        try:
            return await run(conn, AuditKeys(config.audit.key))
        finally:
            await conn.close()

    return asyncio.run(main())


def _recorded_head(args: argparse.Namespace, config: Any) -> tuple[int, str] | None:
    """``--expect SEQ:HASH``, else the head in ``[audit] head_file`` (if there is one)."""
    from gateway.audit_admin import parse_expect
    from gateway.audit_chain import read_head_file

    if args.expect:
        try:
            return parse_expect(args.expect)
        except ValueError as exc:
            raise ConfigError(f"--expect: {exc}") from None
    if config.audit.head_file:
        try:
            recorded = read_head_file(config.audit.head_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[audit] head_file: {exc}") from None
        if recorded is not None:
            print(f"checking the head recorded in {config.audit.head_file}: row {recorded[0]}")
        return recorded
    return None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit_admin import verify

    config = _load_or_demo(args)
    expect = _recorded_head(args, config)

    async def run(conn: Any, keys: Any) -> int:
        verdict = await verify(conn, keys, expect)
        for problem in verdict.problems:
            print(f"TAMPERED {problem}")
        for note in verdict.notes:
            print(f"NOTE {note}")
        if verdict.problems:
            verdict_text = f"{len(verdict.problems)} problem(s)"
        elif verdict.missing:
            verdict_text = (
                f"no unrecorded problems, but {verdict.missing} rows MISSING (recorded by repairs)"
            )
        else:
            verdict_text = "intact"
        if verdict.repairs:
            verdict_text += (
                f" since {verdict.repairs} recorded repair(s), listed above (what a repaired head"
                " had hidden cannot be counted from inside the database: compare with the head"
                " recorded outside, --expect or [audit] head_file)"
            )
        print(f"audit chain: {verdict.checked} records checked, {verdict_text}")
        return 1 if verdict.problems else 0

    return _audit_conn(args, run, config)


def cmd_audit_purge(args: argparse.Namespace) -> int:
    import asyncpg

    from gateway.audit import AuditKeys
    from gateway.audit_admin import purge_verified

    config = _load_or_demo(args)
    days = config.audit.retention_days

    async def run() -> int:
        pool = await asyncpg.create_pool(config.database.url, min_size=1, max_size=1)
        try:
            result = await purge_verified(pool, AuditKeys(config.audit.key), days)
        finally:
            await pool.close()
        print(f"purged {result.deleted} audit records older than {days} days")
        if result.stopped:
            print(f"STOPPED early: {result.stopped}; run `gateway audit verify`")
            return 1
        return 0

    return asyncio.run(run())


def cmd_audit_repair(args: argparse.Namespace) -> int:
    import getpass

    from gateway.audit_admin import repair, verify
    from gateway.audit_chain import write_head_file

    by = args.by or getpass.getuser()
    config = _load_or_demo(args)
    recorded = _recorded_head(args, config)

    async def run(conn: Any, keys: Any) -> int:
        before = await verify(conn, keys, recorded)
        for problem in before.problems:
            print(f"FOUND {problem}")
        result = await repair(conn, keys, by, recorded)
        if result.found is None:
            print("the chain head is sealed: nothing to repair")
            if before.problems:
                print("the rows above fail verification; repair does not change rows")
            return 1 if before.problems else 0
        spans = []
        for what, (first, last) in (("before the first row", result.missing_before),
                                    ("at the end", result.missing)):  # fmt: skip
            if first <= last:
                spans.append(f"MISSING rows {first}..{last} ({last - first + 1}) {what}")
        missing = "; ".join(spans) or "no missing rows counted"
        print(
            f"repaired: {result.found}; last verifiable row {result.last_verified_seq}; "
            f"{missing}; recorded as row {result.seq} and the head re-sealed"
        )
        if config.audit.head_file and result.head is not None:
            if write_head_file(config.audit.head_file, result.head):
                print(f"recorded the new head in {config.audit.head_file}")
            else:
                print(f"{config.audit.head_file} records a later head: left as it is")
        after = await verify(conn, keys)
        for problem in after.problems:
            print(f"STILL TAMPERED {problem}")
        return 1 if after.problems else 0

    return _audit_conn(args, run, config)


def cmd_audit_head(args: argparse.Namespace) -> int:
    from gateway.audit_chain import head_problem, read_head

    async def run(conn: Any, keys: Any) -> int:
        head = await read_head(conn)
        problem = head_problem(keys, head)
        if head is None or problem is not None:
            print(f"audit head: {problem}; run `gateway audit repair`")
            return 1
        print(f"{head['last_seq']}:{head['last_hash']}")
        print(f"mac {head['mac']}")
        print(f"anchor {head['anchor_seq']}:{head['anchor_hash']}")
        return 0

    return _audit_conn(args, run)
