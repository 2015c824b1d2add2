"""The GraphQL types. Nothing here knows about agencies, SQL or HTTP."""

from __future__ import annotations

from schema.mutation import Mutation
from schema.query import Query

__all__ = ["Mutation", "Query"]
