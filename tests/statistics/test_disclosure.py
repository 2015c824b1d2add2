"""Property: whatever the counts and k, the protected family of tables of one population (the
total, each one-way table, the two-way table; every filtered slice is one of their values)
shows no count under k, and no suppressed count can be worked out from everything shown in
all of them together (tests/statistics/oracle.py decides that by linear algebra, knowing
nothing of how the gateway chose). The same check runs against the live gateway in
test_statistics.py."""

from __future__ import annotations

from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.disclosure import Protected, protect, suppress_line
from tests.statistics.oracle import derivable

counts = st.one_of(st.integers(0, 12), st.integers(0, 40), st.integers(0, 500))


@st.composite
def two_way(draw: st.DrawFn) -> tuple[list[list[int]], int]:
    rows = draw(st.integers(2, 6))
    cols = draw(st.integers(2, 6))
    grid = [[draw(counts) for _ in range(cols)] for _ in range(rows)]
    return grid, draw(st.integers(1, 15))


def family(grid: list[list[int]], k: int) -> Protected:
    rows = [f"a{i}" for i in range(len(grid))]
    cols = [f"b{j}" for j in range(len(grid[0]))]
    table: dict[tuple[str, ...], int] = {
        (a, b): grid[i][j] for i, a in enumerate(rows) for j, b in enumerate(cols)
    }
    return protect(("A", "B"), (rows, cols), table, k)


def form(fixed: frozenset[tuple[str, str]], grid: list[list[int]]) -> dict[tuple[int, int], int]:
    """The linear form of a table value over the two-way cells (i, j)."""
    names = dict(fixed)
    return {
        (i, j): 1
        for i in range(len(grid))
        for j in range(len(grid[0]))
        if names.get("A", f"a{i}") == f"a{i}" and names.get("B", f"b{j}") == f"b{j}"
    }


def true_value(fixed: frozenset[tuple[str, str]], grid: list[list[int]]) -> int:
    return sum(grid[i][j] for (i, j) in form(fixed, grid))


@settings(max_examples=400, deadline=None, database=None)
@given(two_way())
def test_two_way_family_shows_nothing_small_and_hides_nothing_derivable(
    case: tuple[list[list[int]], int],
) -> None:
    grid, k = case
    protected = family(grid, k)
    published, suppressed = [], []
    for fixed, value in protected.values.items():
        truth = true_value(fixed, grid)
        if value is None:
            suppressed.append(form(fixed, grid))
        else:
            assert value == truth
            assert value >= k, (fixed, value, k)
            published.append(form(fixed, grid))
        if truth < k:
            assert value is None, (fixed, truth, k)
    assert derivable(published, suppressed) == []


@settings(max_examples=300, deadline=None, database=None)
@given(two_way())
def test_one_way_tables_are_the_margins_of_the_two_way_table(
    case: tuple[list[list[int]], int],
) -> None:
    """Querying one dimension alone shows exactly the margin the two-way table is protected
    with: the two queries cannot be subtracted."""
    grid, k = case
    protected = family(grid, k)
    rows = [f"a{i}" for i in range(len(grid))]
    alone = protect(("A",), (rows,), {(a,): sum(grid[i]) for i, a in enumerate(rows)}, k)
    for a in rows:
        assert alone.value({"A": a}) == protected.value({"A": a})
    assert alone.value({}) == protected.value({})


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(counts, min_size=1, max_size=17), st.integers(1, 15))
def test_one_way_table_never_has_a_lone_suppressed_count(line: list[int], k: int) -> None:
    hidden = suppress_line(line, sum(line), k)
    shown = [{i: 1} for i, h in enumerate(hidden) if not h]
    total = [] if sum(line) < k else [dict.fromkeys(range(len(line)), 1)]
    assert derivable(shown + total, [{i: 1} for i, h in enumerate(hidden) if h]) == []
    assert all(h for v, h in zip(line, hidden, strict=True) if v < k)


def test_a_lone_small_count_takes_the_smallest_other_with_it() -> None:
    """The worked example of docs/statistics.md."""
    assert suppress_line([3, 12, 500], 515, 10) == [True, True, False]


def test_a_small_two_way_cell_is_hidden_on_a_cycle() -> None:
    """One small cell in a table whose margins are all shown: three more counts go, the
    cheapest that close a cycle through it, so every row and column keeps two hidden."""
    grid = [[50, 3, 40], [60, 70, 80], [30, 40, 20]]
    protected = family(grid, 10)
    hidden = {(a, b) for a in ("a0", "a1", "a2") for b in ("b0", "b1", "b2")
              if protected.value({"A": a, "B": b}) is None}  # fmt: skip
    assert hidden == {("a0", "b1"), ("a0", "b2"), ("a2", "b1"), ("a2", "b2")}
    assert all(protected.value({"A": a}) is not None for a in ("a0", "a1", "a2"))


def test_the_oracle_finds_what_primary_suppression_alone_leaves() -> None:
    """The check above can fail: hiding only the small counts leaves them derivable."""
    grid = [[50, 3, 40], [60, 70, 80], [30, 40, 20]]
    cells = {(i, j): grid[i][j] for i in range(3) for j in range(3)}
    shown = [{cell: 1} for cell, v in cells.items() if v >= 10]
    margins = [{(i, j): 1 for j in range(3)} for i in range(3)]
    assert derivable(shown + margins, [{(0, 1): 1}]) == [{(0, 1): 1}]
    assert derivable([{0: 1}, {0: 1, 1: 1}], [{1: 1}]) == [{1: 1}]


@st.composite
def three_way(draw: st.DrawFn) -> tuple[dict[tuple[int, int, int], int], list[int], int]:
    sizes = [draw(st.integers(2, 4)) for _ in range(3)]
    cube = {
        (a, b, c): draw(counts)
        for a in range(sizes[0])
        for b in range(sizes[1])
        for c in range(sizes[2])
    }
    return cube, sizes, draw(st.integers(2, 15))


@settings(max_examples=150, deadline=None, database=None)
@given(three_way())
def test_no_two_groupings_of_one_population_combine_to_reveal_a_count(
    case: tuple[dict[tuple[int, int, int], int], list[int], int],
) -> None:
    """Every query of a measure over dimensions A, B, C: the total, each one-way table and
    each two-way table, each protected on its own as the gateway does. Everything published by
    all of them together, as linear forms over the (never published) three-way cells, leaves
    every suppressed value of every table underivable: no differencing of two groupings."""
    cube, sizes, k = case
    names = ("A", "B", "C")
    domains = [
        [f"{n.lower()}{i}" for i in range(size)] for n, size in zip(names, sizes, strict=True)
    ]
    published: list[dict[Hashable, int]] = []
    suppressed: list[dict[Hashable, int]] = []
    for pair in ((0, 1), (0, 2), (1, 2), (0,), (1,), (2,)):
        table: dict[tuple[str, ...], int] = {}
        for cell, count in cube.items():
            key = tuple(domains[d][cell[d]] for d in pair)
            table[key] = table.get(key, 0) + count
        protected = protect(tuple(names[d] for d in pair), [domains[d] for d in pair], table, k)
        for fixed, value in protected.values.items():
            wanted = dict(fixed)
            linear: dict[Hashable, int] = {
                cell: 1
                for cell in cube
                if all(wanted.get(names[d], domains[d][cell[d]]) == domains[d][cell[d]]
                       for d in range(3))
            }  # fmt: skip
            (suppressed if value is None else published).append(linear)
    assert derivable(published, suppressed) == []
