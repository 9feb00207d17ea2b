"""The Dagster layer: partitions, resources, assets, checks and sensors over the domain modules."""
