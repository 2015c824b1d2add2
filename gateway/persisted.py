"""Persisted documents: Apollo's automatic persisted queries (APQ) and trusted documents.

A request names its document by hash instead of sending it:

- APQ: ``extensions.persistedQuery = {"version": 1, "sha256Hash": H}``. Unknown H answers
  ``PERSISTED_QUERY_NOT_FOUND`` (HTTP 200); the client then sends query and hash together,
  and the gateway registers the query (after checking sha256(query) == H, and only once it
  parses and validates) in the cache backend, so every replica sharing Redis knows it.
- GraphQL-over-HTTP persisted documents: ``documentId`` = ``"sha256:H"`` or ``"H"``, looked up
  in the manifest (and, in apq mode, among the registered APQ documents).

``[persisted] mode``: ``off`` (hashes ignored; a request with a hash only is refused),
``apq`` (both forms; free-form queries still allowed), ``trusted`` (only documents of the
manifest run; anything else is ``OPERATION_NOT_ALLOWED``, HTTP 403, unless the caller has one
of ``allow_free_form_roles``, e.g. analysts in GraphiQL).

The view calls :meth:`PersistedDocuments.resolve` once per operation, after authentication;
it returns the document text to execute. The parse cache is keyed by that text, and
validation (``ValidatedOnce``) by the cached document, so a stored document is parsed and
validated once per process (while it stays among the 256 most recent documents).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.cache import TextCache
from gateway.config import CacheConfig, Config, ConfigError, PersistedConfig
from gateway.errors import BadRequest, OperationNotAllowed, PersistedQueryNotFound
from gateway.graphql_schema import GatewaySchema, check_text
from gateway.principal import Principal

APOLLO_FORMAT = "apollo-persisted-query-manifest"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")  # other hash functions and custom ids, as given
NOT_SUPPORTED = "PersistedQueryNotSupported"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_path(config: Config) -> Path:
    path = Path(config.persisted.manifest)
    if not path.is_absolute() and config.source is not None:
        path = config.source.parent / path
    return path


def parse_manifest(data: Any, where: str = "manifest") -> dict[str, str]:
    """id -> document, from Apollo's ``apollo-persisted-query-manifest`` (version 1) or a plain
    ``{id: document}`` map (GraphQL Code Generator's client preset). ``sha256:`` prefixes go."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a manifest is a JSON object")
    if data.get("format") == APOLLO_FORMAT:
        if data.get("version") != 1:
            raise ConfigError(f"{where}: only version 1 of {APOLLO_FORMAT} is known")
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ConfigError(f"{where}: operations must be a list")
        pairs: Iterable[tuple[Any, Any]] = (
            (op.get("id"), op.get("body")) if isinstance(op, dict) else (None, None)
            for op in operations
        )
    else:
        pairs = data.items()
    out: dict[str, str] = {}
    for raw_id, body in pairs:
        if not isinstance(raw_id, str) or not isinstance(body, str):
            raise ConfigError(f"{where}: every operation needs a string id and body")
        out[_strip(raw_id)] = body
    return out


def load_manifest(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"[persisted] manifest {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[persisted] manifest {path}: {exc}") from None
    return parse_manifest(data, str(path))


def apollo_manifest(operations: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """Apollo's manifest format; each operation has name, type and body (id is computed)."""
    return {
        "format": APOLLO_FORMAT,
        "version": 1,
        "operations": [
            {
                "id": sha256_hex(op["body"]),
                "name": op["name"],
                "type": op["type"],
                "body": op["body"],
            }
            for op in operations
        ],
    }


def _strip(document_id: str) -> str:
    return document_id.removeprefix("sha256:")


class PersistedDocuments:
    def __init__(
        self,
        config: PersistedConfig,
        cache: CacheConfig,
        schema: GatewaySchema,
        manifest: Mapping[str, str] | None = None,
    ) -> None:
        self.mode = config.mode
        self.ttl_s = config.apq_ttl_s
        self.free_form_roles = frozenset(config.allow_free_form_roles)
        self.schema = schema
        self.manifest = dict(manifest or {})
        self.trusted_texts = frozenset(self.manifest.values())
        self.store = (
            TextCache(cache, "apq", config.apq_max_entries) if config.mode == "apq" else None
        )

    @classmethod
    def from_config(cls, config: Config, schema: GatewaySchema) -> PersistedDocuments:
        path = manifest_path(config)
        manifest: dict[str, str] | None = None
        if config.persisted.mode == "trusted" or (
            config.persisted.mode == "apq" and path.is_file()
        ):
            manifest = load_manifest(path)
        return cls(config.persisted, config.cache, schema, manifest)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()

    async def resolve(self, item: Mapping[str, Any], principal: Principal) -> str | None:
        """The document to execute for one operation of a request, when it names one by
        hash (None: run the request as sent). Raises the contract's errors."""
        query = item.get("query")
        extensions = item.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        document_id = item.get("documentId")
        if self.mode == "off":
            if query is None and (persisted is not None or document_id is not None):
                raise BadRequest(NOT_SUPPORTED)
            return None
        apq_hash = _apq_hash(persisted)
        if isinstance(query, str):
            if self.mode == "trusted" and not self._may_send_text(principal, query):
                raise OperationNotAllowed(
                    "Only the registered (trusted) documents may run here; send a documentId."
                )
            if apq_hash is not None:
                if sha256_hex(query) != apq_hash:
                    raise BadRequest("provided sha does not match query")
                await self._register(apq_hash, query)
            return None
        if document_id is not None:
            if not isinstance(document_id, str) or not _ID.match(document_id):
                raise BadRequest("documentId must be a document's id, e.g. sha256:<hex>.")
            key = _strip(document_id)
        elif apq_hash is not None:
            key = apq_hash
        else:
            return None  # neither query nor id: strawberry says what is missing
        text = self.manifest.get(key)
        if text is None and self.store is not None:
            text = await self.store.get(key)
        if text is not None:
            return text
        if self.mode == "trusted":
            raise OperationNotAllowed("No trusted document has this id.")
        raise PersistedQueryNotFound()

    def _may_send_text(self, principal: Principal, query: str) -> bool:
        return bool(self.free_form_roles.intersection(principal.roles)) or (
            query in self.trusted_texts
        )

    async def _register(self, key: str, text: str) -> None:
        """APQ registration: only text that parses and validates is stored (so hostile text
        never is); the request then executes and reports any errors itself."""
        if self.store is None:
            return
        _, errors = check_text(self.schema, text)
        if not errors:
            await self.store.set(key, text, self.ttl_s)


def _apq_hash(persisted: object) -> str | None:
    if persisted is None:
        return None
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
        or not _HASH.match(persisted["sha256Hash"])
    ):
        raise BadRequest(
            'extensions.persistedQuery must be {"version": 1, "sha256Hash": <64 hex digits>}.'
        )
    hash_: str = persisted["sha256Hash"]
    return hash_


# --- the manifest commands (gateway persisted build | check) ---------------------------------


def graphql_files(paths: Iterable[Path]) -> list[Path]:
    """The .graphql and .gql files named, and those under the directories named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".graphql", ".gql"))
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path} does not exist")
    return found


def build_operations(
    schema: GatewaySchema, files: Iterable[Path]
) -> tuple[list[dict[str, str]], list[str]]:
    """Each named operation of the files with the fragments it uses (from any file), printed
    and validated: (operations for the manifest, problems naming file and operation)."""
    from graphql import (
        DocumentNode,
        FragmentDefinitionNode,
        FragmentSpreadNode,
        GraphQLError,
        Node,
        OperationDefinitionNode,
        parse,
        print_ast,
        visit,
    )
    from graphql.language import Visitor

    problems: list[str] = []
    operations: list[tuple[Path, OperationDefinitionNode]] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    for file in files:
        try:
            document = parse(file.read_text())
        except GraphQLError as exc:
            problems.append(f"{file}: {exc.message}")
            continue
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                name = definition.name.value
                if name in fragments:
                    problems.append(f"{file}: fragment {name} is defined twice")
                fragments[name] = definition
            elif isinstance(definition, OperationDefinitionNode):
                if definition.name is None:
                    problems.append(f"{file}: an operation without a name (name each one)")
                else:
                    operations.append((file, definition))

    def spreads(node: Node) -> set[str]:
        names: set[str] = set()

        class Collect(Visitor):
            def enter_fragment_spread(self, spread: FragmentSpreadNode, *_: Any) -> None:
                names.add(spread.name.value)

        visit(node, Collect())
        return names

    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for file, operation in operations:
        assert operation.name is not None
        name = operation.name.value
        if name in seen:
            problems.append(f"{file}: operation {name} is defined twice")
            continue
        seen.add(name)
        used: dict[str, FragmentDefinitionNode] = {}
        todo = spreads(operation)
        while todo:
            fragment_name = todo.pop()
            if fragment_name in used:
                continue
            fragment = fragments.get(fragment_name)
            if fragment is None:
                problems.append(f"{file}: {name} uses fragment {fragment_name}, defined nowhere")
                break
            used[fragment_name] = fragment
            todo |= spreads(fragment) - set(used)
        else:
            body = print_ast(
                DocumentNode(definitions=(operation, *(used[n] for n in sorted(used))))
            )
            _, errors = check_text(schema, body)
            problems += [f"{file}: {name}: {error.message}" for error in errors]
            if not errors:
                out.append({"name": name, "type": operation.operation.value, "body": body})
    return out, problems


def check_manifest(schema: GatewaySchema, manifest: Mapping[str, str]) -> list[str]:
    """One line per document that no longer validates (or whose sha256 id is not its hash)."""
    problems: list[str] = []
    for document_id, body in manifest.items():
        if _HASH.match(document_id) and sha256_hex(body) != document_id:
            problems.append(f"{document_id}: the id is not the sha256 of the document")
        _, errors = check_text(schema, body)
        label = f"{document_id} ({_operation_names(body)})"
        problems += [f"{label}: {error.message}" for error in errors]
    return problems


def _operation_names(body: str) -> str:
    names = re.findall(r"\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)", body)
    return ", ".join(names) or "anonymous"
