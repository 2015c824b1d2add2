"""The compliance suite: prove an adapter keeps the contract of :class:`adapters.base.Adapter`.

Run it from your own tests with one import, as SQLAlchemy's dialects run its suite::

    from adapters.testing import AdapterCompliance
    from my_agency.adapter import ParcelsAdapter, PARCELS

    class TestParcelsAdapter(AdapterCompliance):
        dataset = PARCELS
        present = ["940812-1001751"]        # keys your test agency has records for
        absent = ["900101-1234568"]         # keys it has none for

        def make_adapter(self) -> ParcelsAdapter:
            return ParcelsAdapter("lris", {"url": "http://127.0.0.1:8081"})

pytest collects one test per property: key order, misses, per-key errors, ``many`` datasets,
large batches, timeouts, cancellation, close, concurrency, ping, and statistics
(:func:`check_aggregates`, for an adapter that has the optional ``aggregate`` method). Each
builds a fresh adapter with :meth:`AdapterCompliance.make_adapter` and runs it in an event loop
of its own, so the
suite needs neither pytest-asyncio nor any fixture; a setting that comes from a fixture can be
stored on ``self`` by an autouse fixture of your class. A property that cannot be tested
without something only you can give (keys that fail, an unreachable agency) is skipped, saying
what to give.

This module imports neither pytest nor the gateway: the checks are plain coroutines that
return the problems they find as sentences (:func:`check_open_adapter` and the ``check_*``
functions), usable from any test runner. :class:`adapters.memory.InMemoryAdapter` is an
adapter to build on and to test against.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import unittest
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from adapters.aggregates import DIMENSIONS, AggregateQuery, check_answer
from adapters.base import Adapter, supports_aggregates
from adapters.memory import InMemoryAdapter
from adapters.records import Dataset

__all__ = [
    "AdapterCompliance",
    "Case",
    "InMemoryAdapter",
    "check_aggregates",
    "check_cancellation",
    "check_close",
    "check_concurrency",
    "check_failing_keys",
    "check_large_batch",
    "check_open_adapter",
    "check_ping",
    "check_timeouts",
    "check_unreachable",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Case:
    """What the checks are given: the dataset under test and keys of the test agency."""

    dataset: Dataset
    #: Keys the agency has a record for (for a ``many`` dataset: at least one record).
    present: Sequence[str]
    #: Keys it has no record for.
    absent: Sequence[str]
    #: Keys it answers with an error of their own (may be empty: then not checked).
    failing: Sequence[str] = ()
    #: Seconds any one call may take before the check reports it as hanging.
    patience_s: float = 10.0


async def _within(case: Case, what: str, awaitable: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(case.patience_s):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{what} did not finish within {case.patience_s} s") from None


async def _answer(adapter: Adapter, case: Case, keys: Sequence[str]) -> list[Any]:
    """fetch(keys), raising AssertionError with a sentence when it breaks the contract."""
    try:
        answer = await _within(
            case, f"fetch of {len(keys)} keys", adapter.fetch(case.dataset, list(keys))
        )
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"fetch({_show(keys)}) raised {type(exc).__name__}: {exc}") from exc
    if isinstance(answer, str | bytes) or not isinstance(answer, Sequence):
        raise AssertionError(f"fetch returned {type(answer).__name__}, not a sequence")
    entries = list(answer)
    if len(entries) != len(keys):
        raise AssertionError(f"fetch of {len(keys)} keys returned {len(entries)} entries")
    return entries


def _show(keys: Sequence[str]) -> str:
    keys = list(keys)
    return repr(keys) if len(keys) <= 4 else f"[{keys[0]!r}, ... {len(keys)} keys]"


def entry_problems(case: Case, key: str, entry: Any) -> list[str]:
    """What is wrong with ``entry`` as the answer for ``key`` (empty when nothing)."""
    dataset = case.dataset
    if key in case.failing:
        if isinstance(entry, Exception):
            return []
        return [f"{key}: expected an exception instance for a failing key, got {entry!r}"]
    if isinstance(entry, BaseException):
        return [f"{key}: returned {type(entry).__name__} ({entry})"]
    if key not in case.present:
        # For a many dataset, None means no records as () does: the gateway serves [].
        if entry is None or (dataset.many and entry in ((), [])):
            return []
        return [f"{key}: expected no record, got {entry!r}"]
    if dataset.many and not isinstance(entry, tuple):
        return [f"{key}: a {dataset.name} entry must be a tuple of records"]
    records = entry if dataset.many else (entry,)
    if not records or records[0] is None:
        return [f"{key}: expected a record, got {entry!r}"]
    out = []
    for record in records:
        if not isinstance(record, dataset.record):
            out.append(f"{key}: got {type(record).__name__}, not {dataset.record.__name__}")
        elif not dataclasses.is_dataclass(record) or not _frozen(record):
            out.append(f"{key}: records must be frozen dataclasses")
    return out


def _frozen(record: Any) -> bool:
    params = getattr(type(record), "__dataclass_params__", None)
    return bool(params and params.frozen)


async def check_open_adapter(adapter: Adapter, case: Case) -> list[str]:
    """Everything provable on one started adapter: declared datasets, records, misses,
    per-key errors, key order, the empty batch, concurrent batches and imports."""
    problems: list[str] = []
    if not case.present or not case.absent:
        return ["give at least one present and one absent key"]
    if case.dataset.name not in adapter.datasets:
        problems.append(f"{type(adapter).__name__}.datasets does not list {case.dataset.name!r}")
    problems += _imports_graphql(adapter)
    for check in (check_records, check_key_order, check_empty_batch, check_concurrency):
        try:
            problems += await check(adapter, case)
        except AssertionError as exc:
            problems.append(str(exc))
    return problems


async def check_records(adapter: Adapter, case: Case) -> list[str]:
    """Present keys answer records of the dataset's type, absent keys ``None`` (or ``()``
    for a ``many`` dataset), failing keys an exception; in one batch and one by one."""
    keys = [*case.present, *case.absent, *case.failing]
    problems = []
    batched = await _answer(adapter, case, keys)
    for key, entry in zip(keys, batched, strict=True):
        problems += entry_problems(case, key, entry)
    for key, entry in zip(keys, batched, strict=True):
        [alone] = await _answer(adapter, case, [key])
        if key not in case.failing and alone != entry:
            problems.append(f"{key}: answers differently fetched alone than in a batch")
    return problems


async def check_key_order(adapter: Adapter, case: Case) -> list[str]:
    """Entries follow the order of the keys, whatever that order."""
    keys = [*case.present, *case.absent]
    forward = await _answer(adapter, case, keys)
    backward = await _answer(adapter, case, list(reversed(keys)))
    interleaved = _interleave(case.absent, case.present)
    mixed = await _answer(adapter, case, interleaved)
    by_key = dict(zip(keys, forward, strict=True))
    if forward != list(reversed(backward)) or mixed != [by_key[k] for k in interleaved]:
        return ["entries do not follow the order of the keys"]
    return []


def _interleave(a: Sequence[str], b: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i in range(max(len(a), len(b))):
        out += [*a[i : i + 1], *b[i : i + 1]]
    return out


async def check_empty_batch(adapter: Adapter, case: Case) -> list[str]:
    if await _answer(adapter, case, []) != []:
        return ["an empty batch must return an empty list"]
    return []


async def check_failing_keys(adapter: Adapter, case: Case) -> list[str]:
    """A failing key answers an exception instance; the keys batched with it still answer."""
    keys = _interleave([*case.present, *case.absent], case.failing)
    problems = []
    for key, entry in zip(keys, await _answer(adapter, case, keys), strict=True):
        problems += entry_problems(case, key, entry)
    return problems


async def check_large_batch(adapter: Adapter, case: Case, fillers: Sequence[str]) -> list[str]:
    """A batch far larger than a request makes (the gateway merges the batches of concurrent
    requests, and gives no upper bound): the present keys spread among ``fillers``, keys the
    agency has no record for. An agency that takes fewer keys per call is the adapter's to
    split for."""
    keys = list(fillers)
    step = max(len(keys) // (len(case.present) + 1), 1)
    for i, key in enumerate(case.present):
        keys.insert(min((i + 1) * step, len(keys)), key)
    problems = []
    for key, entry in zip(keys, await _answer(adapter, case, keys), strict=True):
        problems += entry_problems(case, key, entry)
    return problems[:5]


async def check_concurrency(adapter: Adapter, case: Case, batches: int = 30) -> list[str]:
    """Many batches at once (more than a small pool holds) answer as they would one by one."""
    keys = [*case.present, *case.absent]
    expected = dict(zip(keys, await _answer(adapter, case, keys), strict=True))
    asked = [keys[i % len(keys) :] + keys[: i % len(keys)] for i in range(batches)]
    asked += [[keys[i % len(keys)]] for i in range(batches)]
    answers = await asyncio.gather(*(_answer(adapter, case, batch) for batch in asked))
    for batch, answer in zip(asked, answers, strict=True):
        if answer != [expected[k] for k in batch]:
            return ["concurrent batches disagree with one batched fetch"]
    return []


async def check_timeouts(adapter: Adapter, case: Case, rounds: int = 30) -> list[str]:
    """The gateway bounds every call with ``asyncio.timeout``: a call cut short must raise
    TimeoutError there (the adapter lets the cancellation through), and the adapter must
    answer normally afterwards: no connection or slot lost to the calls cut short (more of
    them than a small pool holds)."""
    keys = [*case.present, *case.absent]
    problems: list[str] = []
    for delay in (0.0, 0.001, 0.005):
        for _ in range(rounds // 3):
            try:
                async with asyncio.timeout(delay):
                    await adapter.fetch(case.dataset, keys)
            except TimeoutError:
                pass
            except Exception as exc:
                problems.append(
                    f"a fetch cut short by asyncio.timeout raised {type(exc).__name__}, not "
                    "TimeoutError: let asyncio.CancelledError through"
                )
                break
    problems += await _still_answers(adapter, case, "after fetches cut short by timeouts")
    return problems


async def check_cancellation(adapter: Adapter, case: Case, tasks: int = 30) -> list[str]:
    """Cancelled fetches end cancelled (never swallowing the cancellation) and leave the
    adapter working."""
    keys = [*case.present, *case.absent]
    problems: list[str] = []
    for yields in (0, 1, 3):
        running = [asyncio.ensure_future(adapter.fetch(case.dataset, keys)) for _ in range(tasks)]
        for _ in range(yields):
            await asyncio.sleep(0)
        asked = [task.cancel() for task in running]
        await _within(case, "cancelled fetches", asyncio.wait(running))
        for was_running, task in zip(asked, running, strict=True):
            if was_running and not task.cancelled():
                problems.append(
                    "a cancelled fetch returned or raised instead of ending cancelled: "
                    "let asyncio.CancelledError through"
                )
                break
        for task in running:  # retrieve outcomes, so none is logged as never retrieved
            if not task.cancelled():
                task.exception()
    problems += await _still_answers(adapter, case, "after cancelled fetches")
    return problems


async def _still_answers(adapter: Adapter, case: Case, when: str) -> list[str]:
    keys = [*case.present, *case.absent]
    try:
        entries = await _answer(adapter, case, keys)
    except AssertionError as exc:
        return [f"{when}: {exc}"]
    problems = []
    for key, entry in zip(keys, entries, strict=True):
        problems += [f"{when}: {p}" for p in entry_problems(case, key, entry)]
    return problems


async def check_ping(adapter: Adapter, case: Case) -> list[str]:
    """A started adapter whose agency is up pings without raising."""
    try:
        await _within(case, "ping()", adapter.ping())
    except AssertionError as exc:
        return [str(exc)]
    except Exception as exc:
        return [f"ping() raised {type(exc).__name__}: {exc}"]
    return []


async def check_close(make: Callable[[], Adapter], case: Case) -> list[str]:
    """close() ends promptly, may be called twice, and a fetch after it raises (never hangs
    nor answers from a closed connection)."""
    adapter = make()
    await _within(case, "start()", adapter.start())
    await _answer(adapter, case, [*case.present, *case.absent])
    await _within(case, "close()", adapter.close())
    problems: list[str] = []
    try:
        await _within(case, "a second close()", adapter.close())
    except AssertionError as exc:
        problems.append(str(exc))
    except Exception as exc:
        problems.append(f"a second close() raised {type(exc).__name__}: {exc}")
    problems += await _must_raise(
        case, "fetch after close()", adapter.fetch(case.dataset, case.present)
    )
    return problems


async def check_unreachable(make_unreachable: Callable[[], Adapter], case: Case) -> list[str]:
    """An agency that is down at start-up must not stop the gateway: start() succeeds,
    ping() and fetch() raise promptly, close() works."""
    adapter = make_unreachable()
    problems: list[str] = []
    try:
        await _within(case, "start() of an unreachable agency", adapter.start())
    except AssertionError as exc:
        return [str(exc)]
    except Exception as exc:
        return [f"start() raised {type(exc).__name__} for an unreachable agency: it must not"]
    try:
        problems += await _must_raise(case, "ping() of an unreachable agency", adapter.ping())
        problems += await _must_raise(
            case, "fetch() of an unreachable agency", adapter.fetch(case.dataset, case.present)
        )
    finally:
        await _within(case, "close() of an unreachable agency", adapter.close())
    return problems


async def _must_raise(case: Case, what: str, awaitable: Awaitable[Any]) -> list[str]:
    try:
        await _within(case, what, awaitable)
    except AssertionError as exc:
        return [str(exc)]
    except Exception:
        return []
    return [f"{what} did not raise"]


async def check_aggregates(adapter: Adapter, case: Case) -> list[str]:
    """Statistics (``Adapter.aggregate``): every grouping of the dataset by none, one or two of
    its dimensions answers known categories and non-negative counts, and counts the same
    population: each grouping adds up to the total, and a two-way table's margins are the
    one-way tables. (The gateway's protection rests on that: a record left out of one grouping
    but counted in another could be found by subtracting the two.)"""
    name = case.dataset.name
    dims = DIMENSIONS.get(name, ())
    groupings = [(), *((d,) for d in dims), *((a, b) for a in dims for b in dims if a < b)]
    tables: dict[tuple[str, ...], dict[tuple[str, ...], int]] = {}
    problems: list[str] = []
    for grouping in groupings:
        query = AggregateQuery(name, grouping)
        answer = await _within(case, f"aggregate by {grouping}", adapter.aggregate(query))
        try:
            tables[grouping] = check_answer(query, answer)
        except ValueError as exc:
            problems.append(f"aggregate of {name} by {list(grouping)}: {exc}")
    if problems or () not in tables:
        return problems
    total = sum(tables[()].values())
    for grouping, table in tables.items():
        if sum(table.values()) != total:
            problems.append(
                f"aggregate of {name} by {list(grouping)} counts {sum(table.values())} records,"
                f" the total is {total}"
            )
        if len(grouping) == 2:
            for axis, dim in enumerate(grouping):
                margin: dict[tuple[str, ...], int] = {}
                for key, count in table.items():
                    margin[(key[axis],)] = margin.get((key[axis],), 0) + count
                alone = {k: v for k, v in tables.get((dim,), {}).items() if v}
                if {k: v for k, v in margin.items() if v} != alone:
                    problems.append(
                        f"aggregate of {name} by {list(grouping)}: its {dim} margin is not the "
                        f"table by {dim} alone"
                    )
    return problems


def _imports_graphql(adapter: Adapter) -> list[str]:
    module = sys.modules[type(adapter).__module__]
    imported = {getattr(v, "__module__", getattr(v, "__name__", "")) for v in vars(module).values()}
    if any(str(name).split(".")[0] in {"graphql", "strawberry"} for name in imported):
        return ["the adapter module imports GraphQL; adapters must not depend on it"]
    return []


def _skip(reason: str) -> NoReturn:
    try:
        import pytest  # only when a test runs: the gateway never needs pytest
    except ImportError:
        raise unittest.SkipTest(reason) from None
    pytest.skip(reason)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    # A loop of its own that never becomes the thread's current loop: the suite runs the
    # same under pytest-asyncio (whose loops it leaves alone) as without it.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coroutine)


class AdapterCompliance:
    """Subclass as ``Test<Something>``, set :attr:`dataset`, :attr:`present` and
    :attr:`absent`, and return a new, unstarted adapter from :meth:`make_adapter`.

    Optional: :attr:`failing` (keys your test agency answers with an error),
    :meth:`make_unreachable_adapter` (the adapter pointed at an agency that is down),
    :meth:`filler_keys` (keys without records for the large batch; RRN-shaped by default),
    :attr:`large_batch` and :attr:`patience_s`.
    """

    dataset: Dataset
    present: Sequence[str] = ()
    absent: Sequence[str] = ()
    failing: Sequence[str] = ()
    #: Keys in the large-batch check.
    large_batch: int = 1000
    #: Seconds any one call may take before it is reported as hanging.
    patience_s: float = 10.0

    def make_adapter(self) -> Adapter:
        """A new adapter for the test agency, not started."""
        raise NotImplementedError(f"{type(self).__name__} must define make_adapter()")

    def make_unreachable_adapter(self) -> Adapter | None:
        """The adapter configured for an agency that is down (a closed port, say)."""
        return None

    def filler_keys(self, n: int) -> list[str]:
        """``n`` distinct keys the test agency has no record for."""
        return [f"990101-9{i:06d}" for i in range(n)]

    # -- the tests -------------------------------------------------------------------

    def test_declares_its_dataset(self) -> None:
        adapter = self.make_adapter()
        assert self.dataset.name in adapter.datasets, (
            f"{type(adapter).__name__}.datasets does not list {self.dataset.name!r}"
        )

    def test_does_not_import_graphql(self) -> None:
        _verdict(_imports_graphql(self.make_adapter()))

    def test_records_and_misses(self) -> None:
        self._check(check_records)

    def test_key_order(self) -> None:
        self._check(check_key_order)

    def test_empty_batch(self) -> None:
        self._check(check_empty_batch)

    def test_many_dataset_answers_tuples(self) -> None:
        if not self.dataset.many:
            _skip(f"{self.dataset.name} is not a many dataset")
        self._check(check_records)

    def test_per_key_errors(self) -> None:
        if not self.failing:
            _skip("set `failing` to keys your test agency answers with errors")
        self._check(check_failing_keys)

    def test_large_batch(self) -> None:
        fillers = self.filler_keys(self.large_batch - len(self.present))
        self._check(lambda adapter, case: check_large_batch(adapter, case, fillers))

    def test_concurrency(self) -> None:
        self._check(check_concurrency)

    def test_timeouts(self) -> None:
        self._check(check_timeouts)

    def test_cancellation(self) -> None:
        self._check(check_cancellation)

    def test_ping(self) -> None:
        self._check(check_ping)

    def test_close(self) -> None:
        _verdict(_run(check_close(self.make_adapter, self.case())))

    def test_aggregates(self) -> None:
        adapter = self.make_adapter()
        if not supports_aggregates(adapter):
            _skip("the adapter has no aggregate method (statistics are optional)")
        if self.dataset.name not in DIMENSIONS:
            _skip(f"no statistics are defined over {self.dataset.name}")
        self._check(check_aggregates)

    def test_unreachable_agency(self) -> None:
        if self.make_unreachable_adapter() is None:
            _skip("define make_unreachable_adapter() to check an outage")
        _verdict(_run(check_unreachable(self._unreachable, self.case())))

    # -- helpers ---------------------------------------------------------------------

    def case(self) -> Case:
        return Case(self.dataset, self.present, self.absent, self.failing, self.patience_s)

    def _unreachable(self) -> Adapter:
        adapter = self.make_unreachable_adapter()
        assert adapter is not None
        return adapter

    def _check(self, check: Callable[[Adapter, Case], Awaitable[list[str]]]) -> None:
        case = self.case()
        if not case.present or not case.absent:
            raise AssertionError("give at least one present and one absent key")

        async def run() -> list[str]:
            async with self.make_adapter() as adapter:
                return await check(adapter, case)

        _verdict(_run(run()))


def _verdict(problems: list[str]) -> None:
    if problems:
        raise AssertionError("the adapter breaks the contract:\n  " + "\n  ".join(problems))
