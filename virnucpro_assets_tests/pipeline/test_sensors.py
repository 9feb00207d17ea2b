"""The inbox sensor, declarative automation and the retry schedule: evaluated tick by tick as the
daemon would, against an ephemeral instance, and at the end for real, with the daemon running."""

import json
import threading
from contextlib import contextmanager

import dagster as dg
import pytest

from virnucpro_assets.definitions import defs
from virnucpro_assets.demo.reads import write_fasta, write_fastq
from virnucpro_assets.models.classifier import Classifier
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.pipeline.models import ModelsResource
from virnucpro_assets.pipeline.partitions import SAMPLES
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.pipeline.sensors import inbox_sensor, retry_failed_partitions
from virnucpro_assets_tests.daemon import Instance, wait_for
from virnucpro_assets_tests.pipeline.conftest import SHARD_ASSETS

# A limit for a failing test, not a speed target: alone on two cores this test takes about a minute.
PROCESS_TIMEOUT_S = 300
READS = ">r1\nATGAAACCCGGGTTTAAACCCGGGTTT\n>r2\nATGCCCAAAGGGTTTCCCAAAGGG\n"


class Inbox:
    """The inbox sensor of an ephemeral instance; each tick starts from the stored JSON cursor alone,
    as after a daemon restart, and its partition requests are applied as the daemon applies them."""

    def __init__(self, tmp_path, monkeypatch):
        self.path = tmp_path / "inbox"
        self.follow_links = False
        self.instance = dg.DagsterInstance.ephemeral()
        self.store = StoreResource(root=str(tmp_path / "store"))
        self.cursor = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"store": self.store})
        result = inbox_sensor(self.path, follow_links=self.follow_links, interval=30)(context)
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result

    def ticks_until_taken(self) -> list[dg.SensorResult]:
        """Two ticks: one to see each file, one to find it unchanged."""
        return [self.tick(), self.tick()]

    def drop(self, name: str, text: str = READS):
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    @property
    def samples(self) -> list[str]:
        return sorted(self.instance.get_dynamic_partitions(SAMPLES))


def started(result: dg.SensorResult) -> list[str]:
    return [request.partition_key for request in result.run_requests]


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    return Inbox(tmp_path, monkeypatch)


def test_a_file_is_taken_once_it_stops_changing_and_only_once(inbox):
    path = inbox.drop("lib1.fastq", "@r1\nACGTACGT\n+\nIIIIIIII\n")
    assert started(inbox.tick()) == []
    with open(path, "a") as handle:
        handle.write("@r2\nGGGGCCCC\n+\nIIIIIIII\n")
    growing = inbox.tick()
    assert started(growing) == [] and "waiting for lib1.fastq" in growing.skip_reason.skip_message
    taken = inbox.tick()
    assert started(taken) == ["lib1"] and inbox.samples == ["lib1"]
    assert taken.run_requests[0].tags["virnucpro/source"] == "inbox"
    assert started(inbox.tick()) == [] and inbox.samples == ["lib1"]
    assert json.loads(inbox.cursor)["lib1.fastq"]["state"] == "registered"


def test_gzipped_files_are_taken(inbox):
    inbox.path.mkdir()
    write_fasta([("r1", "ACGT" * 20)], inbox.path / "reads.fa.gz")
    assert started(inbox.ticks_until_taken()[-1]) == ["reads"]


def test_hidden_temporary_and_partial_names_are_never_looked_at(inbox):
    for name in (".upload.fastq", "a.fastq.tmp", "b.fasta.part"):
        inbox.drop(name)
    (inbox.path / "subdirectory.fa").mkdir()
    inbox.ticks_until_taken()
    assert inbox.samples == [] and json.loads(inbox.cursor) == {}


def test_a_bad_file_is_reported_once_and_does_not_hold_up_the_others(inbox):
    inbox.drop("notes.fasta", "these are not reads\n")
    inbox.drop("good.fasta")
    results = inbox.ticks_until_taken()
    assert started(results[-1]) == ["good"] and inbox.samples == ["good"]
    [rejection] = results[-1].asset_events
    assert rejection.asset_key == dg.AssetKey("sample_reads")
    assert "notes.fasta" in rejection.metadata["rejected_file"].value
    assert "neither FASTA" in rejection.metadata["reason"].value
    assert json.loads(inbox.cursor)["notes.fasta"]["state"] == "rejected"
    assert inbox.tick().asset_events == []
    inbox.drop("notes.fasta", "still not reads, but changed\n")
    assert len(inbox.ticks_until_taken()[-1].asset_events) == 1


def test_an_undecodable_file_is_reported(inbox):
    inbox.path.mkdir()
    (inbox.path / "broken.fastq.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    [rejection] = inbox.ticks_until_taken()[-1].asset_events
    assert "broken.fastq.gz" in rejection.metadata["reason"].value and inbox.samples == []


def test_a_renamed_or_copied_file_is_the_sample_it_already_was(inbox):
    path = inbox.drop("first.fasta")
    inbox.ticks_until_taken()
    path.rename(inbox.path / "renamed.fasta")
    inbox.drop("copy.fasta")
    results = inbox.ticks_until_taken()
    assert started(results[-1]) == [] and inbox.samples == ["first"]
    files = json.loads(inbox.cursor)
    assert {name: file["sample"] for name, file in files.items()} == {"copy.fasta": "first", "renamed.fasta": "first"}


def test_identical_files_arriving_together_are_one_sample(inbox):
    inbox.drop("a.fasta")
    inbox.drop("b.fasta")
    assert started(inbox.ticks_until_taken()[-1]) == ["a"] and inbox.samples == ["a"]


def test_a_name_taken_by_other_content_is_reported(inbox):
    inbox.drop("s1.fasta")
    inbox.ticks_until_taken()
    (inbox.path / "s1.fasta").unlink()
    inbox.drop("s1.fa", ">other\nGGGGCCCCAAAATTTT\n")
    [rejection] = inbox.ticks_until_taken()[-1].asset_events
    assert "already registered" in rejection.metadata["reason"].value


def test_links_out_of_the_inbox_are_ignored_unless_allowed(inbox, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere" / "private.fa"
    outside.parent.mkdir()
    outside.write_text(">o1\nACGTTGCAACGT\n")
    inside = inbox.drop("real.fa")
    (inbox.path / "linked.fa").symlink_to(outside)
    (inbox.path / "zalias.fa").symlink_to(inside)
    results = inbox.ticks_until_taken()
    assert started(results[-1]) == ["real"] and inbox.samples == ["real"]
    files = json.loads(inbox.cursor)
    assert files["linked.fa"]["state"] == "ignored" and files["zalias.fa"]["sample"] == "real"
    assert results[-1].asset_events == [] and inbox.tick().run_requests == []
    inbox.follow_links = True  # VIRNUCPRO_INBOX_FOLLOW_LINKS=1
    assert started(inbox.ticks_until_taken()[-1]) == ["linked"]
    assert inbox.store.registry.get("linked").path == str(outside)


def test_no_message_cursor_or_observation_quotes_a_files_content(inbox, capfd):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"
    inbox.drop("id_ed25519", key)
    results = inbox.ticks_until_taken()
    [rejection] = results[-1].asset_events
    reason = rejection.metadata["reason"].value
    assert "id_ed25519" in reason and "starts with a punctuation mark or symbol" in reason
    tick_log = capfd.readouterr().err  # the sensor context's log handler writes to stderr
    assert "inbox file id_ed25519 rejected" in tick_log
    everything = f"{inbox.cursor} {reason} {rejection.description} {tick_log} {results[-1].skip_reason.skip_message}"
    for secret in ("BEGIN", "OPENSSH", "b3Bl", "----"):
        assert secret not in everything


class Automation:
    """The automation sensor's evaluations, tick after tick, as the daemon makes them."""

    def __init__(self, instance):
        self.instance = instance
        self.cursor = None

    def tick(self) -> dict[str, list[str]]:
        """asset -> partitions requested on this tick."""
        result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        return {key.to_user_string(): sorted(result.get_requested_partitions(key)) for key in keys if result.get_requested_partitions(key)}


def test_automation_runs_each_shards_chain_then_the_report(pipeline, genome_reads):
    sample = pipeline.register(genome_reads[:12], "auto")
    shards = pipeline.shard_partitions(sample)
    automation = Automation(pipeline.instance)
    assert automation.tick() == {}
    pipeline.materialize(["sample_reads"], sample)
    assert automation.tick() == {asset: sorted(map(str, shards)) for asset in SHARD_ASSETS}
    for partition in shards[:-1]:
        pipeline.materialize(SHARD_ASSETS, partition)
    assert automation.tick() == {}, "sample_report waits for the last shard"
    pipeline.materialize(SHARD_ASSETS, shards[-1])
    assert automation.tick() == {"sample_report": [sample]}
    assert automation.tick() == {}


def test_a_sample_arriving_between_two_ticks_starts_its_shards_one_tick_later(pipeline, genome_reads):
    """As deployed: the daemon ticks, a sample is registered and its reads split; its shards, new
    partitions then, are held back one tick as a step that had just finished would be (see
    automation.just_finished), and the tick after requests every shard's chain, once."""
    automation = Automation(pipeline.instance)
    pipeline.register(genome_reads[:12], "warm-up")
    assert automation.tick() == {}
    sample = pipeline.register(genome_reads[12:24], "arriving")
    pipeline.materialize(["sample_reads"], sample)
    assert automation.tick() == {}
    assert automation.tick() == {asset: sorted(map(str, pipeline.shard_partitions(sample))) for asset in SHARD_ASSETS}
    assert automation.tick() == {}


def test_a_sample_materialized_before_the_first_automation_tick_still_starts_its_shards(pipeline, genome_reads):
    """The daemon started after sample_reads was materialized (from the CLI without the daemon, or
    just before the daemon's first tick): eager() alone drops that update with its first evaluation."""
    sample = pipeline.register(genome_reads[:12], "early")
    pipeline.materialize(["sample_reads"], sample)
    automation = Automation(pipeline.instance)
    first, second = automation.tick(), automation.tick()
    assert {**first, **second} == {asset: sorted(map(str, pipeline.shard_partitions(sample))) for asset in SHARD_ASSETS}
    assert automation.tick() == {}


def test_a_step_finishing_during_a_tick_is_not_requested_again(persistent_pipeline, genome_reads, monkeypatch):
    """A GPU step that finishes while an automation tick is being evaluated is not started again.
    Dagster reads the assets' latest materializations at the start of a tick and whether they are in
    progress later, so such a step looked neither materialized nor running (seen in CI: a shard's
    esm2_embeddings run twice, and merged_features and predictions after it)."""
    from dagster._utils.caching_instance_queryer import CachingInstanceQueryer

    pipeline = persistent_pipeline
    sample = pipeline.register(genome_reads[:12], "race")
    first = pipeline.shard_partitions(sample)[0]
    automation = Automation(pipeline.instance)
    pipeline.materialize(["sample_reads"], sample)
    automation.tick()

    pipeline.materialize(["translated_proteins"], first)

    # The rest of the first shard's chain, held inside its ESM-2 step. Nothing else materializes
    # until it ends: Dagster's run set-up is not safe beside another run of the same process.
    entered, release, embedding = threading.Event(), threading.Event(), Esm2Embedder.embed

    def held(self, *args, **kwargs):
        entered.set()
        release.wait(60)
        return embedding(self, *args, **kwargs)

    monkeypatch.setattr(Esm2Embedder, "embed", held)
    chain = threading.Thread(target=pipeline.materialize, args=(SHARD_ASSETS[1:], first))
    chain.start()
    esm2 = dg.AssetKey("esm2_embeddings")
    wait_for(entered.is_set, 60, "the ESM-2 step to start")
    assert str(first) not in automation.tick().get("esm2_embeddings", []), "in progress"

    prefetch = CachingInstanceQueryer.prefetch_asset_records

    def finishing_now(queryer, keys):
        prefetch(queryer, keys)
        if not release.is_set():
            release.set()
            wait_for(lambda: pipeline.instance.get_latest_materialization_event(esm2), 60, "the ESM-2 step to finish")

    monkeypatch.setattr(CachingInstanceQueryer, "prefetch_asset_records", finishing_now)
    requested = automation.tick()
    chain.join(60)
    assert release.is_set() and not chain.is_alive()
    assert str(first) not in requested.get("esm2_embeddings", []), requested
    assert str(first) not in automation.tick().get("esm2_embeddings", [])


def test_a_failed_blocking_check_holds_back_the_report(pipeline, genome_reads, monkeypatch):
    sample = pipeline.register(genome_reads[:12], "held")
    automation = Automation(pipeline.instance)
    pipeline.materialize(["sample_reads"], sample)
    automation.tick()
    *good, bad = pipeline.shard_partitions(sample)
    for partition in good:
        pipeline.materialize(SHARD_ASSETS, partition)
    score = Classifier.score
    monkeypatch.setattr(Classifier, "score", lambda self, features: (score(self, features)[0] + 1, score(self, features)[1]))
    pipeline.materialize(SHARD_ASSETS, bad, raise_on_error=False)
    assert pipeline.instance.get_latest_materialization_event(dg.AssetKey("predictions")) is not None
    assert automation.tick() == {}


@pytest.fixture
def persistent_pipeline(pipeline):
    """A pipeline on an instance in a directory: schedule contexts need one."""
    with dg.instance_for_test() as instance:
        pipeline.instance = instance
        yield pipeline


def test_the_retry_schedule_reruns_partitions_whose_latest_materialization_failed(persistent_pipeline, genome_reads, tmp_path):
    pipeline = persistent_pipeline
    sample = pipeline.register(genome_reads[:12], "flaky")
    pipeline.materialize(["sample_reads"], sample)
    first, *_ = pipeline.shard_partitions(sample)
    pipeline.materialize(SHARD_ASSETS[:-1], first)
    working_models = pipeline.resources["models"]
    models = pipeline.models
    pipeline.resources["models"] = ModelsResource(
        dnabert=str(models.dnabert), esm2=str(models.esm2), classifier=str(tmp_path / "500_model.pth")
    )
    # The run's model check fails it at its start: its one asset's partition is failed.
    pipeline.materialize(["predictions"], first, raise_on_error=False)

    def retries():
        context = dg.build_schedule_context(instance=pipeline.instance, repository_def=defs.get_repository_def())
        return retry_failed_partitions(context)

    [request] = retries()
    assert request.partition_key == str(first) and request.asset_selection == [dg.AssetKey("predictions")]
    assert request.tags["virnucpro/source"] == "retry"
    pipeline.resources["models"] = working_models
    pipeline.materialize(request.asset_selection, request.partition_key)
    assert isinstance(retries(), dg.SkipReason)


@contextmanager
def upload_in_progress(path, every_s=0.3):
    """A file that grows by one read every `every_s` seconds for the block, like a slow copy."""
    stop = threading.Event()

    def write():
        with open(path, "a") as handle:
            while not stop.is_set():
                handle.write(">partial\nACGTACGTACGTACGTACGTACGTACGTACGT\n")
                handle.flush()
                stop.wait(every_s)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


@pytest.mark.long(40)
def test_dropped_files_end_as_sample_reports_with_the_daemon_running(tmp_path, demo_models, genome_reads):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    instance = Instance(tmp_path, demo_models, VIRNUCPRO_INBOX=str(inbox), VIRNUCPRO_SHARDS="2", VIRNUCPRO_SENSOR_INTERVAL="1")
    reads = [r for r in genome_reads if len(r[1]) >= 300]
    write_fasta(reads[:6], inbox / "lake.fasta")
    write_fastq(reads[6:12], inbox / "soil.fastq.gz")
    (inbox / "broken.fasta").write_text("no reads in here\n")
    # The instance's storage exists before the daemon starts, so that the two never both create it.
    with instance.dagster() as dagster, instance.daemon(), upload_in_progress(inbox / "upload.fasta"):
        reports = dg.AssetKey("sample_report")

        def reported_and_settled() -> bool:
            # A report's check runs in its run after the report is stored: count the checks only
            # once every run has finished.
            return dagster.get_materialized_partitions(reports) == {"lake", "soil"} and all(run.is_finished for run in dagster.get_runs())

        try:
            wait_for(reported_and_settled, PROCESS_TIMEOUT_S, "both samples' sample_report, and every run finished")
        except AssertionError as timeout:
            runs = ", ".join(f"{run.tags.get('dagster/partition')} {run.status.value}" for run in dagster.get_runs())
            raise AssertionError(f"{timeout}; runs: {runs}") from None
        assert sorted(dagster.get_dynamic_partitions(SAMPLES)) == ["lake", "soil"], "the upload in progress must wait"
        [rejection] = dagster.fetch_observations(dg.AssetKey("sample_reads"), limit=10).records
        metadata = rejection.asset_observation.metadata
        assert metadata["rejected_file"].value == str(inbox / "broken.fasta") and "neither FASTA" in metadata["reason"].value
        checked = [
            (run, record.event_log_entry.dagster_event.event_specific_data)
            for run in dagster.get_runs()
            for record in dagster.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        ]
        evaluated = sorted(
            f"{e.check_name} [{e.partition}] in run {run.run_id[:8]} ({run.tags.get('dagster/partition')}, "
            f"{run.asset_selection and sorted(k.to_user_string() for k in run.asset_selection)})"
            for run, e in checked
        )
        assert len(checked) == 2 * (2 * 5 + 1), "\n".join(evaluated)
        assert all(evaluation.passed for _, evaluation in checked)
