import dagster as dg

from virnucpro_assets import defs

CONTRACT_ASSETS = {"sample_reads", "translated_proteins"}


def test_every_definition_loads():
    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert keys >= CONTRACT_ASSETS


def test_shard_assets_are_sample_by_shard():
    graph = defs.get_repository_def().asset_graph
    partitions = graph.get(dg.AssetKey("translated_proteins")).partitions_def
    assert isinstance(partitions, dg.MultiPartitionsDefinition)
    assert [d.name for d in partitions.partitions_defs] == ["sample", "shard"]


def test_the_code_location_loads_without_torch():
    """Runs of CPU steps only (sample_reads, sample_report), the CLI and the daemon's code server
    import the code location; torch is imported by the steps that use a model."""
    import subprocess
    import sys

    script = "import sys, virnucpro_assets.definitions; print(sorted(m for m in ('torch', 'esm') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
