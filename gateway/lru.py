"""Bounded caches of things worked out once: plans, compiled trees, validation results.

``LRU`` is a bounded least-recently-used mapping. ``ByNode`` keys what was worked out for a
syntax node (an operation, a document) of one schema by the two objects' identities: the
parse cache hands every request with the same text the same document, so an identity
lookup finds it without hashing the syntax tree (a graphql-core node's hash walks the whole
tree). An entry keeps its node alive, so the node's ``id`` cannot be reused while the entry
is there, and a weak reference to its schema, so an entry made for a schema since freed (and
followed by another at the same address) is never answered for the new one.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: V) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        found = self.get(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found

    def __len__(self) -> int:
        return len(self.entries)


class ByNode(Generic[V]):
    """Values for (schema, node, extra) — ``extra`` hashable, compared by value."""

    def __init__(self, size: int) -> None:
        self.lru: LRU[tuple[Any, weakref.ref[Any], V]] = LRU(size)

    def get(self, schema: object, node: object, extra: Hashable = ()) -> V | None:
        found = self.lru.get((id(schema), id(node), extra))
        if found is None or found[0] is not node or found[1]() is not schema:
            return None
        return found[2]

    def put(self, schema: object, node: object, value: V, extra: Hashable = ()) -> None:
        self.lru.put((id(schema), id(node), extra), (node, weakref.ref(schema), value))
