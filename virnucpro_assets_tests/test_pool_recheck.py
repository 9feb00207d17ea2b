"""The cap on Dagster's backoff between a blocked step's checks for a pool slot."""

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from dagster._core.execution.plan import instance_concurrency_context as claims
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.pipeline.pool_recheck import DAGSTER_MAX_RECHECK_S, cap_pool_recheck_interval, seconds_to_next_claim_check
from virnucpro_assets.settings import pool_recheck_s


@pytest.fixture
def restore_dagsters_backoff():
    yield
    cap_pool_recheck_interval(DAGSTER_MAX_RECHECK_S)


def intervals():
    """Seconds Dagster waits before a blocked step's check number n checks again."""
    return [claims._calculate_timeout_interval(None, n) for n in (0, 5, 20, 29, 31, 200)]


def test_the_cap_bounds_the_pinned_dagsters_backoff(restore_dagsters_backoff):
    cap_pool_recheck_interval(DAGSTER_MAX_RECHECK_S)
    dagsters = intervals()
    assert dagsters[0] == 1 and dagsters[-1] == DAGSTER_MAX_RECHECK_S and dagsters == sorted(dagsters)
    assert 5 < dagsters[2] < DAGSTER_MAX_RECHECK_S  # after 20 checks (about 57 s blocked): 6.7 s between checks

    cap_pool_recheck_interval(1.0)
    assert intervals() == [1.0] * 6
    cap_pool_recheck_interval(0.5)
    assert intervals() == [0.5] * 6


def test_loading_the_definitions_applies_the_setting(tmp_path):
    """In a process of its own, as a run's: loading the code location sets the cap from the environment."""
    probe = (
        "import virnucpro_assets.definitions\n"
        "from dagster._core.execution.plan import instance_concurrency_context as claims\n"
        "print(claims._calculate_timeout_interval(None, 200))"
    )
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "VIRNUCPRO_POOL_RECHECK_S": "2.5"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "2.5"


@pytest.mark.parametrize("value", ["0", "16", "soon", "nan"])
def test_a_bad_setting_is_refused(monkeypatch, value):
    monkeypatch.setenv("VIRNUCPRO_POOL_RECHECK_S", value)
    with pytest.raises(ConfigurationError, match="VIRNUCPRO_POOL_RECHECK_S"):
        pool_recheck_s()


def test_a_run_waiting_for_a_slot_sleeps_until_its_next_check(restore_dagsters_backoff):
    """Dagster's own returns min(0, ...): the executor's loop never sleeps and spins a core."""
    cap_pool_recheck_interval(1.0)
    assert InstanceConcurrencyContext.interval_to_next_pending_claim_check is seconds_to_next_claim_check
    now = time.time()

    def waiting(claims, timeouts):
        return SimpleNamespace(_pending_claims=set(claims), _pending_timeouts=dict(timeouts))

    assert 0.5 < seconds_to_next_claim_check(waiting({"a", "b"}, {"a": now + 0.8, "b": now + 3})) <= 0.8
    assert seconds_to_next_claim_check(waiting({"a"}, {"a": now - 2})) == 0.0  # due already
    assert seconds_to_next_claim_check(waiting({"a", "b"}, {"a": now + 0.8})) == 0.0  # b not tried yet
    assert seconds_to_next_claim_check(waiting({"a"}, {"a": now + 0.8, "gone": now + 0.1})) > 0.5  # claimed ones ignored
