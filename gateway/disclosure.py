"""Disclosure control for statistics: which counts of a table may be shown.

A table groups one population by up to two dimensions. It is protected together with its
margins (the one-dimensional tables of each of its dimensions, and the total), because any
analyst can ask for those too:

1. Primary suppression: a count under ``k`` is suppressed, a total under ``k`` included.
2. A one-dimensional table (a line with its total) never has exactly one suppressed count:
   the total minus the others would give it. The smallest other count is suppressed too.
3. A two-dimensional table starts from the patterns its margins get on their own (rule 2, so
   the margin a query for one dimension shows is the margin every two-dimensional query uses):
   every count in a row or column whose margin is suppressed is suppressed, so no table sums
   up to a margin another query hides. Then, in the table extended by its margins, every line
   (row with its margin, column with its margin, the margins with the total) sums to a known
   value; a suppressed entry can be derived from the published ones exactly when it is a
   bridge of the bipartite graph whose edges are the suppressed entries (an entry on a cycle
   can move by +1/-1 around the cycle without changing any line). While a bridge remains,
   the cheapest set of published counts that puts it on a cycle (a shortest path, each count
   costing itself plus one) is suppressed as well.

Every table of a measure is a margin or a slice of the same two-way tables, computed the same
way from the same counts, so two queries that group the same population differently cannot be
subtracted to reveal a suppressed count. docs/statistics.md says what remains possible.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Key = tuple[str, ...]
#: A cell or margin of a table: the (dimension, category) pairs it fixes (none: the total).
Fixed = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Protected:
    """A protected table: every cell and margin, None where suppressed."""

    dimensions: tuple[str, ...]
    values: Mapping[Fixed, int | None]

    def value(self, fixed: Mapping[str, str]) -> int | None:
        return self.values[frozenset(fixed.items())]


def protect(
    dimensions: Sequence[str],
    domains: Sequence[Sequence[str]],
    counts: Mapping[Key, int],
    k: int,
) -> Protected:
    """Protect the table of ``counts`` (missing combinations count 0) grouped by up to two
    ``dimensions`` whose categories are ``domains``."""
    dims = tuple(dimensions)
    total = sum(counts.values())
    values: dict[Fixed, int | None] = {frozenset(): None if total < k else total}
    if len(dims) == 1:
        (name,), (domain,) = dims, domains
        line = [counts.get((a,), 0) for a in domain]
        for a, x, hidden in zip(domain, line, suppress_line(line, total, k), strict=True):
            values[frozenset({(name, a)})] = None if hidden else x
    elif len(dims) == 2:
        (da, db), (rows, cols) = dims, domains
        grid = [[counts.get((a, b), 0) for b in cols] for a in rows]
        cells, row_hidden, col_hidden = suppress_grid(grid, k)
        for i, a in enumerate(rows):
            values[frozenset({(da, a)})] = None if row_hidden[i] else sum(grid[i])
            for j, b in enumerate(cols):
                values[frozenset({(da, a), (db, b)})] = None if cells[i][j] else grid[i][j]
        for j, b in enumerate(cols):
            column = sum(row[j] for row in grid)
            values[frozenset({(db, b)})] = None if col_hidden[j] else column
    elif dims:
        raise ValueError("tables have at most two dimensions")
    return Protected(dims, values)


def suppress_line(values: Sequence[int], total: int, k: int) -> list[bool]:
    """Which counts of a line whose total is published (unless under k) to suppress."""
    if total < k:
        return [True] * len(values)
    hidden = [v < k for v in values]
    if sum(hidden) == 1:
        shown = sorted((v, i) for i, v in enumerate(values) if not hidden[i])
        if shown:
            hidden[shown[0][1]] = True
    return hidden


def suppress_grid(grid: Sequence[Sequence[int]], k: int) -> tuple[
    list[list[bool]], list[bool], list[bool]
]:  # fmt: skip
    """Suppressed cells, row margins and column margins of a two-way table."""
    r, c = len(grid), len(grid[0])
    rows = [sum(row) for row in grid]
    cols = [sum(grid[i][j] for i in range(r)) for j in range(c)]
    total = sum(rows)
    row_hidden = suppress_line(rows, total, k)
    col_hidden = suppress_line(cols, total, k)
    hidden = [
        [grid[i][j] < k or row_hidden[i] or col_hidden[j] for j in range(c)] for i in range(r)
    ]

    def unknown(i: int, j: int) -> bool:
        if i < r and j < c:
            return hidden[i][j]
        if i < r:
            return row_hidden[i]
        if j < c:
            return col_hidden[j]
        return total < k

    while True:
        edges = [(i, j) for i in range(r + 1) for j in range(c + 1) if unknown(i, j)]
        bridges = _bridges(r + 1, edges)
        if not bridges:
            return hidden, row_hidden, col_hidden
        path = _cheapest_cycle(min(bridges), grid, unknown)
        if not path:  # cannot happen (see module docstring); fail closed all the same
            return [[True] * c for _ in range(r)], row_hidden, col_hidden
        for i, j in path:
            hidden[i][j] = True


def _bridges(rows: int, edges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Edges (row, column) of a bipartite graph that lie on no cycle. Row i is node i,
    column j is node rows + j."""
    adjacent: dict[int, list[tuple[int, int]]] = {}
    for index, (i, j) in enumerate(edges):
        adjacent.setdefault(i, []).append((rows + j, index))
        adjacent.setdefault(rows + j, []).append((i, index))
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    found: list[tuple[int, int]] = []
    for start in adjacent:
        if start in order:
            continue
        order[start] = low[start] = len(order)
        stack: list[tuple[int, int, int]] = [(start, -1, 0)]  # node, edge in, next neighbour
        while stack:
            node, via, at = stack[-1]
            if at < len(adjacent[node]):
                stack[-1] = (node, via, at + 1)
                neighbour, index = adjacent[node][at]
                if index == via:
                    continue
                if neighbour in order:
                    low[node] = min(low[node], order[neighbour])
                else:
                    order[neighbour] = low[neighbour] = len(order)
                    stack.append((neighbour, index, 0))
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] > order[parent]:
                        found.append(edges[via])
    return found


def _cheapest_cycle(
    bridge: tuple[int, int], grid: Sequence[Sequence[int]], unknown: Callable[[int, int], bool]
) -> list[tuple[int, int]]:
    """The published inner cells whose suppression closes the cheapest cycle through
    ``bridge``: a shortest path from its row to its column that avoids it, where suppressed
    entries cost nothing and a published inner cell costs its count plus one (margins cannot
    be added: their pattern is fixed by the one-dimensional tables)."""
    r, c = len(grid), len(grid[0])
    source, target = bridge[0], (r + 1) + bridge[1]

    def entry(a: int, b: int) -> tuple[int, int]:
        """The entry (row, column) joining nodes a and b."""
        return (a, b - (r + 1)) if a <= r else (b, a - (r + 1))

    best: dict[int, int] = {source: 0}
    came: dict[int, int] = {}
    queue = [(0, source)]
    while queue:
        cost, node = heapq.heappop(queue)
        if node == target:
            break
        if cost > best.get(node, cost):
            continue
        others = range(r + 1, r + 1 + c + 1) if node <= r else range(r + 1)
        for other in others:
            i, j = entry(node, other)
            if (i, j) == bridge:
                continue
            if unknown(i, j):
                extra = 0
            elif i < r and j < c:
                extra = grid[i][j] + 1
            else:
                continue
            if cost + extra < best.get(other, cost + extra + 1):
                best[other] = cost + extra
                came[other] = node
                heapq.heappush(queue, (cost + extra, other))
    if target not in came:
        return []
    path: list[tuple[int, int]] = []
    node = target
    while node != source:
        previous = came[node]
        joined = entry(previous, node)
        if not unknown(*joined):
            path.append(joined)
        node = previous
    return path
