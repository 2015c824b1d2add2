"""The adapter contract as one call on a started adapter; kept for tests written before
``adapters.testing``, which holds the whole compliance suite (timeouts, cancellation,
close, large batches, ping) and is what new tests should use.

::

    from adapters.contract import check_adapter
    from adapters.records import INSURANCE

    async def test_my_adapter_keeps_the_contract():
        async with MyAdapter("nhis", settings) as adapter:
            problems = await check_adapter(
                adapter, INSURANCE, present=["940812-1001751"], absent=["900101-1234568"]
            )
        assert problems == []

Every problem found is returned as a sentence; an empty list means the adapter keeps the
contract of :class:`adapters.base.Adapter` as far as one open adapter can show it.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.base import Adapter
from adapters.records import Dataset
from adapters.testing import Case, check_open_adapter


async def check_adapter(
    adapter: Adapter, dataset: Dataset, present: Sequence[str], absent: Sequence[str]
) -> list[str]:
    return await check_open_adapter(adapter, Case(dataset, present, absent))
