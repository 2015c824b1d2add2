"""The GraphQL types. Nothing here knows about agencies, SQL or HTTP."""

from __future__ import annotations

from schema.query import Query

__all__ = ["Query"]
