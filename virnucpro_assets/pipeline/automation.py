"""Declarative automation: every asset after `sample_reads` follows its upstream on its own.

Once a sample's `sample_reads` is materialized (by the inbox sensor, the CLI or the UI), the
automation sensor requests, per shard, one run holding that shard's whole chain
(translated_proteins → dnabert_tokens → both embeddings → merged_features → predictions, with their
checks), and,
once every shard's predictions exist and no shard is still running, one run of `sample_report`.
A partition whose upstream failed, is missing or failed a blocking check is not requested.
A run killed part-way is retried by the daemon (`run_retries` in dagster.yaml), not by automation.
"""

import dagster as dg

from virnucpro_assets.pipeline.sensors import minimum_interval

# An upstream partition is trusted once its blocking checks passed, or when it runs in the same run
# (there, a failed blocking check stops the steps after it). Written as "no upstream partition is
# untrusted" because any_/all_deps_match look at each upstream asset as a whole: for sample_report,
# `all_deps_match` would be satisfied by a single good shard of predictions.
untrusted = ~(
    dg.AutomationCondition.will_be_requested()
    | dg.AutomationCondition.all_checks_match(dg.AutomationCondition.check_passed(), blocking_only=True)
)
deps_checked = (~dg.AutomationCondition.any_deps_match(untrusted)).with_label("no upstream blocking check failed")

# eager(), except that its trigger is not reset by the condition's first evaluation: eager() drops
# whatever happened before its first tick (Dagster's way of not back-filling history when a condition
# is added), so a sample_reads materialized before the daemon's first automation tick (the CLI
# without the daemon, a daemon started late) would never start anything downstream. Here the first
# tick finds the missing partitions whose upstream is in place and requests them.
missing_or_upstream_updated = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated())
    .since(dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated())
    .with_label("newly missing or upstream updated, since last requested or updated")
)

# A tick reads the assets' latest materializations when it starts and whether they are in progress
# later. A step finishing in between looks neither materialized nor running, and eager() alone
# requests it again (a GPU step run twice, everything after it too). Such a step was in progress at
# the previous tick, so holding back for one tick whatever just stopped being in progress is enough:
# by then its materialization is seen and counts as handled. A sample's new shard partitions are
# held back a tick as well (seen for the first time, they are "newly not in progress"): one tick of
# delay, kept because no narrower hold has been shown to close that race (excepting newly missing
# partitions was tried, and a shard's chain then ran twice in test_distributed.py once in CI).
just_finished = (~dg.AutomationCondition.in_progress()).newly_true().with_label("stopped being in progress since the last tick")

# Nothing here re-requests a failed partition: a run killed part-way is re-executed from its failed
# step by the instance's run retries (dagster.yaml), the checks it missed included, and a step that
# failed on its own stays failed in the UI for a person to look at, rather than failing in a loop.
follows_upstream = (
    missing_or_upstream_updated
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & ~just_finished
    # A partition whose run failed is the run retry's (dagster.yaml run_retries) or the user's to
    # re-run; requesting it here too ran a killed GPU step twice.
    & ~dg.AutomationCondition.execution_failed()
    & deps_checked
).with_label("eager, on checked upstream, from the first tick")


def automation_sensor(interval: int) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates every asset's condition, every `interval` seconds."""
    return dg.AutomationConditionSensorDefinition(
        "virnucpro_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval(interval),
        # One run per partition with its whole chain, rather than a backfill that runs stage by stage.
        emit_backfills=False,
        description="Materializes every asset whose upstream changed (see virnucpro_assets.pipeline.automation).",
    )
