"""CPU of choosing what to forward to a GraphQL subgraph (``gateway.forwarding``).

Once per request, agency and view, the gateway walks the operation for the selections of the
subgraph's ``Resident`` fields (aliases, fragments, directives) and renders the granted part.
This times that walk and render for a household query with aliases and two fragments::

    .venv/bin/python -m bench.forwarding_cpu --runs 20000
"""

from __future__ import annotations

import argparse
import time
import types

from graphql import FieldNode, FragmentDefinitionNode, OperationDefinitionNode, parse

from gateway.forwarding import render, selected
from gateway.graphql_schema import build_schema
from gateway.policy import Grant
from gateway.subgraph import SubgraphContribution, from_sdl

SDL = '''
"""A resident, by RRN."""
type Resident @key(fields: "rrn") {
  rrn: String!
  """Vehicles registered to the resident."""
  vehicles: [Vehicle!]
  """The resident's driving licence."""
  licence: Licence
}
"""A vehicle."""
type Vehicle {
  """Plate."""
  plate: String!
  """Maker."""
  make: String!
  """Electric."""
  electric: Boolean!
  """Inspections."""
  inspections: [Inspection!]!
}
"""An inspection."""
type Inspection {
  """Odometer."""
  odometerKm: Int!
}
"""A licence."""
type Licence {
  """Number."""
  number: String!
  """Expiry."""
  expiresOn: String!
}
'''

QUERY = """query($rrn: String!, $full: Boolean!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { name household { members {
    cars: vehicles { plate } ...More vehicles @include(if: $full) { electric }
    licence @skip(if: $full) { number } } } } }
fragment More on Resident {
  vehicles { ... on Vehicle { make } inspections { ...Reading } } licence { expiresOn } }
fragment Reading on Inspection { odometerKm }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20000)
    args = parser.parse_args()
    contribution = from_sdl("vehicle", SDL, "bench")
    assert isinstance(contribution, SubgraphContribution)
    graph = contribution.graph
    schema = build_schema(contributions=[("bench", contribution)])._schema
    document = parse(QUERY)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    resident = operation.selection_set.selections[0]
    assert isinstance(resident, FieldNode)
    assert resident.selection_set is not None
    household = resident.selection_set.selections[1]
    assert isinstance(household, FieldNode)
    assert household.selection_set is not None
    members = household.selection_set.selections[0]
    assert isinstance(members, FieldNode)
    assert members.selection_set is not None
    info = types.SimpleNamespace(
        schema=schema, operation=operation, fragments=fragments,
        variable_values={"full": False}, field_nodes=[members.selection_set.selections[0]],
    )  # fmt: skip
    grant = Grant(fields=frozenset(f"{t}.{f}" for t, fs in graph.items() for f in fs))
    start = time.process_time()
    for _ in range(args.runs):
        text = render(selected(info, graph), graph, grant)  # type: ignore[arg-type]
    spent = (time.process_time() - start) / args.runs
    print(f"forwarded: {text}")
    print(f"{spent * 1e6:.1f} µs CPU per selection (walk + render), {args.runs} runs")


if __name__ == "__main__":
    main()
