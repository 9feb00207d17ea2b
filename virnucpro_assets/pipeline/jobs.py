"""Named jobs for launching work from the CLI (`dagster job launch/backfill`) and sensors."""

import dagster as dg

# Everything of one sample × shard partition, from proteins to predictions, upstream first: two
# GPU steps and four CPU steps.
SHARD_ASSETS = ("translated_proteins", "dnabert_tokens", "dnabert_embeddings", "esm2_embeddings", "merged_features", "predictions")
# Every asset of one sample, from its reads to its report.
SAMPLE_ASSETS = ("sample_reads", *SHARD_ASSETS, "sample_report")

# `dagster job backfill -m virnucpro_assets -j shard_pipeline --partitions "S|000,S|001"` queues one
# run per shard; the daemon starts them and the gpu pool spreads them over the devices.
shard_pipeline = dg.define_asset_job("shard_pipeline", selection=dg.AssetSelection.assets(*SHARD_ASSETS))
