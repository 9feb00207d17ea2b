"""How soon a step waiting for a slot of a concurrency pool (the GPU pool) sees that one came free.

Dagster gives a freed slot to the first waiting step at once, but that step learns it only at its
next check, and Dagster spaces a blocked step's checks by a backoff from 1 s growing 10 % a check up
to 15 s (dagster._core.execution.plan.instance_concurrency_context in dagster 1.13, against the
database load of many blocked steps). A GPU step that waited through another shard's minute-long
step checks only every 5 to 15 s by then, and the device idles until it does, at every hand-off.
Capped at VIRNUCPRO_POOL_RECHECK_S (default 1 s), a waiting step costs one small indexed query a
second. Dagster has no setting for it: the cap is the module's constant, set when a code location
loads its definitions (in every process that executes steps); virnucpro_assets_tests/test_pool_recheck.py
checks that the pinned Dagster still spaces its checks by it.
"""

from dagster._core.execution.plan import instance_concurrency_context

DAGSTER_MAX_RECHECK_S = 15.0


def cap_pool_recheck_interval(seconds: float) -> None:
    """Blocked pool claims are checked again at least every `seconds` (15: Dagster's own backoff)."""
    instance_concurrency_context.MAX_CONCURRENCY_CLAIM_BLOCKED_INTERVAL = seconds
