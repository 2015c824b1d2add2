"""Query safety tests (persisted documents, rate limits): the machine's Redis, one namespace
per test (see tests/resilience/conftest.py)."""

from __future__ import annotations

from tests.resilience.conftest import machine_redis, redis_at_6379

__all__ = ["machine_redis", "redis_at_6379"]
