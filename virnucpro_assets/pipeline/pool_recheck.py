"""How a step waiting for a slot of a concurrency pool (the GPU pool) waits: how soon it sees that
one came free, and that it sleeps meanwhile. Two corrections to Dagster 1.13's
dagster._core.execution.plan.instance_concurrency_context, applied when a code location loads its
definitions (in every process that executes steps); virnucpro_assets_tests/test_pool_recheck.py
checks that the pinned Dagster still works the way they assume.

- Re-check interval. Dagster gives a freed slot to the first waiting step at once, but that step
  learns it only at its next check, and Dagster spaces a blocked step's checks by a backoff from
  1 s growing 10 % a check up to 15 s (against the database load of many blocked steps). A GPU step
  that waited through another shard's minute-long step checks only every 5 to 15 s by then, and the
  device idles until it does, at every hand-off. Capped at VIRNUCPRO_POOL_RECHECK_S (default 1 s),
  a waiting step costs one small indexed query a second. Dagster has no setting for it: the cap is
  the module's constant.
- Sleeping between checks. The run's executor sleeps for `interval_to_next_pending_claim_check()`
  when no step can start, but Dagster's returns min(0, ...), never more than 0, so a run whose
  next step waits on the pool spins a whole core until the slot comes (one per waiting run: 24 of
  them for 32 runs on an 8-GPU host, beside the CPU stages they slow down). Here it returns the
  time left until the earliest pending check, which is what the executor's loop expects.
"""

import time

from dagster._core.execution.plan import instance_concurrency_context
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

DAGSTER_MAX_RECHECK_S = 15.0


def cap_pool_recheck_interval(seconds: float) -> None:
    """Blocked pool claims are checked again at least every `seconds` (15: Dagster's own backoff),
    and a run waiting for one sleeps until its next check."""
    instance_concurrency_context.MAX_CONCURRENCY_CLAIM_BLOCKED_INTERVAL = seconds
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = seconds_to_next_claim_check


def seconds_to_next_claim_check(context: InstanceConcurrencyContext) -> float:
    """Seconds until the earliest pending claim of `context` is due to be checked again (0: now)."""
    due = [context._pending_timeouts[key] for key in context._pending_claims if key in context._pending_timeouts]
    if len(due) < len(context._pending_claims):  # a claim not tried yet, or whose wait is over
        return 0.0
    return max(0.0, min(due) - time.time()) if due else 0.0
