"""The reference for planned execution: authorization per field, as the gateway did it
before operation plans (a strawberry ``SchemaExtension.resolve`` hook in front of every
resolver, asking the policy at every field). Kept here, out of the gateway, as the oracle
of the differential test (``test_planned.py``).

``per_field_schema`` builds the gateway's schema, then takes the plan's resolvers out again
(each keeps the field's own resolver as ``__wrapped__``) and puts this hook in place of the
``Planned`` extension.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graphql import GraphQLObjectType
from strawberry.extensions import SchemaExtension

from gateway.access import ROOT_TYPES, Access, Info, _track
from gateway.config import Config
from gateway.errors import Forbidden
from gateway.graphql_schema import GatewaySchema, schema_for
from gateway.plans import Planned
from gateway.policy import SERVICE_TYPES


def per_field_schema(config: Config) -> GatewaySchema:
    schema = schema_for(config)
    for name, graphql_type in schema._schema.type_map.items():
        if isinstance(graphql_type, GraphQLObjectType) and not name.startswith("__"):
            for graphql_field in graphql_type.fields.values():
                original = getattr(graphql_field.resolve, "__wrapped__", None)
                if original is not None:
                    graphql_field.resolve = original
    schema.extensions = tuple(Authorize if e is Planned else e for e in schema.extensions)
    return schema


def resolve_field(
    access: Access, resolve: Callable[..., Any], root: Any, info: Info, *args: Any, **kwargs: Any
) -> Any:
    type_name = info.parent_type.name
    coordinate = f"{type_name}.{info.field_name}"
    subject: str | None = (
        root.record.rrn if type_name == "Resident" else getattr(root, "subject", None)
    )
    view: str | None = getattr(root, "view", None)
    if subject is None or view is None:  # a data type that cannot say whose data it is
        raise Forbidden(f"You may not read {coordinate}.")
    entry = access._entry(subject, view)
    if coordinate == "Resident.rrn":  # always readable; masking decides how much
        entry.disclosed.add(coordinate)
        return resolve(root, info, *args, **kwargs)
    grant = access.policy.grant(access.principal.roles, view)
    if grant is None or coordinate not in grant.fields:
        entry.denied.add(coordinate)
        raise Forbidden(f"You may not read {coordinate} for {view}.")
    if coordinate in grant.consent:
        return access._with_consent(resolve, root, info, args, kwargs, entry, coordinate)
    result = resolve(root, info, *args, **kwargs)
    if inspect.isawaitable(result):
        return _track(result, entry, coordinate)
    entry.disclosed.add(coordinate)
    if coordinate == "HealthInsurance.insuredBy" and root.insured_by_rrn is not None:
        # It names another resident: that resident's access log must show it too.
        access._entry(root.insured_by_rrn, view).disclosed.add(coordinate)
    return result


class Authorize(SchemaExtension):
    """Runs the request's Access in front of every resolver that needs a decision."""

    def resolve(
        self, _next: Callable[..., Any], root: Any, info: Info, *args: Any,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        type_name = info.parent_type.name
        if info.field_name.startswith("__"):  # the object's existence is already recorded
            return _next(root, info, *args, **kwargs)
        access: Access = info.context.access
        if type_name in access.policy.resident_types:
            return resolve_field(access, _next, root, info, *args, **kwargs)
        if type_name in ROOT_TYPES:
            access.require_operation(f"{type_name}.{info.field_name}", info, kwargs)
        elif type_name not in SERVICE_TYPES and not type_name.startswith("__"):
            raise Forbidden(f"{type_name}.{info.field_name} is not classified; refused.")
        return _next(root, info, *args, **kwargs)
