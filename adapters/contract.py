"""The adapter contract as a runnable check: prove an adapter before you deploy it.

From your own tests::

    from adapters.contract import check_adapter
    from adapters.records import INSURANCE

    async def test_my_adapter_keeps_the_contract():
        async with MyAdapter("nhis", settings) as adapter:
            problems = await check_adapter(
                adapter, INSURANCE, present=["940812-1001751"], absent=["900101-1234568"]
            )
        assert problems == []

``present`` are keys your test data has a record for, ``absent`` keys it has none for.
Every problem found is returned as a sentence; an empty list means the adapter keeps the
contract of :class:`adapters.base.Adapter`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from adapters.base import Adapter
from adapters.records import Dataset


async def check_adapter(
    adapter: Adapter, dataset: Dataset, present: Sequence[str], absent: Sequence[str]
) -> list[str]:
    problems: list[str] = []
    if not present or not absent:
        return ["give at least one present and one absent key"]
    if dataset.name not in adapter.datasets:
        problems.append(f"{type(adapter).__name__}.datasets does not list {dataset.name!r}")

    async def fetch(keys: Sequence[str]) -> list[Any] | None:
        try:
            answer = await adapter.fetch(dataset, keys)
        except Exception as exc:
            problems.append(f"fetch({list(keys)!r}) raised {type(exc).__name__}: {exc}")
            return None
        entries = list(answer)
        if len(entries) != len(keys):
            problems.append(f"fetch of {len(keys)} keys returned {len(entries)} entries")
            return None
        return entries

    keys = [*present, *absent]
    forward = await fetch(keys)
    backward = await fetch(list(reversed(keys)))
    if forward is not None:
        for key, entry in zip(keys, forward, strict=True):
            problems += _check_entry(dataset, key, entry, key in present)
    if forward is not None and backward is not None and forward != list(reversed(backward)):
        problems.append("entries do not follow the order of the keys")
    empty = await fetch([])
    if empty is not None and empty != []:
        problems.append("an empty batch must return an empty list")
    # Concurrent batches must not interfere with each other.
    results = await asyncio.gather(*(adapter.fetch(dataset, [k]) for k in keys))
    if forward is not None and [r[0] for r in results] != forward:
        problems.append("concurrent single-key fetches disagree with one batched fetch")
    module = sys.modules[type(adapter).__module__]
    imported = {getattr(v, "__module__", getattr(v, "__name__", "")) for v in vars(module).values()}
    if any(str(name).split(".")[0] in {"graphql", "strawberry"} for name in imported):
        problems.append("the adapter module imports GraphQL; adapters must not depend on it")
    return problems


def _check_entry(dataset: Dataset, key: str, entry: Any, expected: bool) -> list[str]:
    if isinstance(entry, BaseException):
        return [f"{key}: returned {type(entry).__name__} ({entry})"]
    if not expected:
        # For a many dataset, None means no records as () does: the gateway serves [].
        if dataset.many and entry in ((), []):
            return []
        return [] if entry is None else [f"{key}: expected no record, got {entry!r}"]
    records = entry if dataset.many else (entry,)
    if dataset.many and not isinstance(entry, tuple):
        return [f"{key}: a {dataset.name} entry must be a tuple of records"]
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
