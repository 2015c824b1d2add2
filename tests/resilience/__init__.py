"""Cache, single flight, failures, stale data, invalidation: what users see when agencies,
the cache or the network misbehave."""
