"""IO managers: how asset values reach the store and come back as the inputs of later steps.

Assets return their data and take their upstream as function inputs; only these IO managers (and
the storage module under them) know where files are. Three of them, over one store
(virnucpro_assets.storage.Store: a local path, a shared file system or an fsspec URL):

| IO manager key | values | files |
|---|---|---|
| `table_io_manager` | `pyarrow.Table` per shard; for `sample_reads`, `{shard: Table}` per sample | Parquet |
| `tensor_io_manager` | `EmbeddingTable` (pair ids + float32 matrix) per shard | Arrow IPC, memory-mapped on load |
| `report_io_manager` | `{file name: bytes}` per sample | the files themselves |

Paths are hive-style, `<store>/<asset>/sample=<s>/shard=<k>.<ext>` for a shard partition and the
directory `<store>/<asset>/sample=<s>/` for a sample partition. A shard partition is one file
published atomically by the step that made it, in its own process (GPU steps included); a sample
partition is a directory whose files appear together.

Loading follows the partition mapping: a shard step reading a sample asset gets its own shard
(`sample_reads` -> `translated_proteins`); a sample step reading a shard asset gets `{shard: value}`
for all shards of its sample (`predictions` -> `sample_report`). An input's `columns` metadata
(`dg.AssetIn(metadata={"columns": [...]})`) reads only those Parquet columns.

Every materialization records the digest of each file it wrote (`checksums`), and every load
compares the file with it, so a corrupt, truncated or swapped file fails the step that reads it,
naming the file, the partition and what to re-materialize. Tables also carry Dagster's
`dagster/row_count` and `dagster/column_schema` and the file's `path` (a URI on object stores).

Built on `dagster.UPathIOManager` (fsspec paths, the output/input dispatch), overriding its
partition layout (`get_path_for_partition`) and partition loading (`load_partitions`) as its
documentation suggests, since a partition here may be a directory and loading verifies digests.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pyarrow as pa
from upath import UPath

from virnucpro_assets.errors import CorruptDataError, MissingInputError
from virnucpro_assets.pipeline.coordination import record_run_process
from virnucpro_assets.pipeline.partitions import sample_and_shard
from virnucpro_assets.results.html_report import REPORT_PAGE
from virnucpro_assets.storage import (
    EMBEDDING_EXTENSION,
    TABLE_EXTENSION,
    EmbeddingTable,
    Store,
    load_embeddings,
    read_table,
    verified_buffer,
    write_embeddings,
    write_table,
)
from virnucpro_assets.storage.store import WITHDRAWN_SUFFIX

CHECKSUMS = "checksums"


class StoreIOManager(dg.UPathIOManager):
    """What the three IO managers share: layout, atomic publishing, digests."""

    file_extension = ""  # of a shard partition's file

    def __init__(self, store: Store):
        super().__init__(base_path=store.root)
        self.store = store

    # --- what each kind of value is on disk (subclasses) ---------------------------------------
    @abstractmethod
    def write_file(self, value: Any, path: Path) -> None: ...

    @abstractmethod
    def read_file(self, source: Path | bytes, context: dg.InputContext, digest: str | None, name: str) -> Any: ...

    def describe(self, value: Any) -> dict[str, Any]:
        return {}

    def directory_files(self, value: dict[str, Any]) -> dict[str, Any]:
        """The files of a sample partition's value, by name."""
        return value

    def directory_value(self, files: dict[str, Any]) -> dict[str, Any]:
        return files

    # --- layout -------------------------------------------------------------------------------
    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        sample, _, shard = partition.partition("/")
        return self.partition_path(_asset_name(context), sample, shard or None)

    def partition_path(self, asset: str, sample: str, shard: str | None) -> UPath:
        if shard is None:
            return self.store.sample_dir(asset, sample)
        return self.store.shard_path(asset, sample, shard, self.file_extension)

    # --- writing ------------------------------------------------------------------------------
    def make_directory(self, path: UPath) -> None:
        pass  # the store creates directories as it publishes

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if _is_shard_partition(context.asset_partition_key):
            digests = {path.name: self.store.publish_file(path, lambda local: self.write_file(obj, local))}
        else:
            files = self.directory_files(obj)

            def write_all(directory: Path) -> None:
                for name, value in files.items():
                    self.write_file(value, directory / name)

            digests = self.store.publish_directory(path, write_all)
        context.add_output_metadata({CHECKSUMS: dg.MetadataValue.json(digests), **self.describe(obj)})

    # --- reading ------------------------------------------------------------------------------
    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        raise dg.DagsterInvariantViolationError(
            f"{type(self).__name__} stores partitioned assets only; {_asset_name(context)} is not partitioned"
        )

    def load_partitions(self, context: dg.InputContext) -> Any:
        keys = list(context.asset_partition_keys)
        if len(keys) == 1 and not _is_shard_partition(keys[0]):
            return self._load_sample(context, keys[0])
        values = {sample_and_shard(key)[1]: self._load_shard(context, key) for key in keys}
        if len(keys) == 1 and context.has_partition_key and _is_shard_partition(context.partition_key):
            return next(iter(values.values()))
        return dict(sorted(values.items()))

    def _load_shard(self, context: dg.InputContext, key: str) -> Any:
        sample, shard = sample_and_shard(key)
        path = self.partition_path(_asset_name(context), sample, shard)
        digests = recorded_digests(context, key)
        return self._read(context, path, digests.get(path.name) if digests is not None else None, key)

    def _load_sample(self, context: dg.InputContext, sample: str) -> Any:
        directory = self.partition_path(_asset_name(context), sample, None)
        digests = recorded_digests(context, sample)
        names = sorted(digests) if digests is not None else self.store.list_names(directory)
        if context.has_partition_key and _is_shard_partition(context.partition_key):
            # A shard step reads its own shard of a sample asset stored as shard files.
            wanted = f"shard={sample_and_shard(context.partition_key)[1]}.{self.file_extension}"
            if wanted not in names:
                raise MissingInputError(
                    f"{_asset_name(context)} [{sample}] has no {wanted}: it was materialized with other shards; "
                    f"re-materialize {_asset_name(context)} for sample {sample!r}"
                )
            return self._read(context, directory / wanted, (digests or {}).get(wanted), sample)
        return self.directory_value({name: self._read(context, directory / name, (digests or {}).get(name), sample) for name in names})

    def _read(self, context: dg.InputContext, path: UPath, digest: str | None, partition: str) -> Any:
        asset = _asset_name(context)
        rerun = f"re-materialize {asset} for partition {partition}"
        try:
            with self.store.readable(path) as source:
                return self.read_file(source, context, digest, str(path))
        except FileNotFoundError as error:
            withdrawn = path.parent / f".{path.name}{WITHDRAWN_SUFFIX}"
            why = "it failed its blocking check and was withdrawn" if withdrawn.exists() else "it is missing from the store"
            raise MissingInputError(f"{path}: {asset} [{partition}] cannot be read: {why}; {rerun}") from error
        except CorruptDataError as error:
            raise CorruptDataError(f"{error}; {rerun} (asset {asset}, partition {partition})") from error


def recorded_digests(context: dg.InputContext, partition: str) -> dict[str, str] | None:
    """The file digests recorded by the latest materialization of an upstream partition; None for
    one materialized before digests were recorded."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        raise MissingInputError(f"{_asset_name(context)} [{partition}] has not been materialized: materialize it first")
    recorded = records[0].asset_materialization.metadata.get(CHECKSUMS)
    if recorded is None:
        context.log.warning(
            f"{_asset_name(context)} [{partition}] was materialized without file digests (an earlier version): "
            "its files are read unchecked; re-materialize it to protect them"
        )
        return None
    return dict(recorded.value)


class ParquetIOManager(StoreIOManager):
    file_extension = TABLE_EXTENSION

    def write_file(self, value: pa.Table, path: Path) -> None:
        write_table(value, path)

    def read_file(self, source, context, digest, name) -> pa.Table:
        columns = (context.definition_metadata or {}).get("columns")
        return read_table(source, columns=columns, expected_digest=digest, name=name)

    def directory_files(self, value: dict[str, pa.Table]) -> dict[str, pa.Table]:
        return {f"shard={shard}.{TABLE_EXTENSION}": table for shard, table in value.items()}

    def directory_value(self, files: dict[str, pa.Table]) -> dict[str, pa.Table]:
        return {name.removeprefix("shard=").removesuffix(f".{TABLE_EXTENSION}"): table for name, table in files.items()}

    def describe(self, value: pa.Table | dict[str, pa.Table]) -> dict[str, Any]:
        tables = list(value.values()) if isinstance(value, dict) else [value]
        return {
            "dagster/row_count": sum(table.num_rows for table in tables),
            "dagster/column_schema": table_schema(tables[0].schema) if tables else dg.TableSchema([]),
        }


class ArrowIOManager(StoreIOManager):
    file_extension = EMBEDDING_EXTENSION

    def dump_to_path(self, context: dg.OutputContext, obj: EmbeddingTable, path: UPath) -> None:
        super().dump_to_path(context, obj, path)
        # Stores written before embedding tables were Arrow IPC kept a Parquet file in its place.
        former = path.with_suffix(f".{TABLE_EXTENSION}")
        if former.exists():
            former.unlink()

    def write_file(self, value: EmbeddingTable, path: Path) -> None:
        write_embeddings(path, value)

    def read_file(self, source, context, digest, name) -> EmbeddingTable:
        return load_embeddings(source, expected_digest=digest, name=name)

    def describe(self, value: EmbeddingTable) -> dict[str, Any]:
        return {
            "dagster/row_count": len(value.pair_ids),
            "dagster/column_schema": dg.TableSchema(
                [
                    dg.TableColumn("pair_id", "string"),
                    dg.TableColumn("embedding", f"fixed_size_list<float32>[{value.width}]"),
                ]
            ),
            "width": value.width,
        }


class FilesIOManager(StoreIOManager):
    """A sample partition as a directory of named files: `{name: bytes}`."""

    def write_file(self, value: bytes, path: Path) -> None:
        path.write_bytes(value)

    def read_file(self, source, context, digest, name) -> bytes:
        return verified_buffer(source, digest, name).to_pybytes()

    def describe(self, value: dict[str, bytes]) -> dict[str, Any]:
        return {"files": dg.MetadataValue.json({name: len(data) for name, data in value.items()})}

    def dump_to_path(self, context: dg.OutputContext, obj: dict[str, bytes], path: UPath) -> None:
        super().dump_to_path(context, obj, path)
        if REPORT_PAGE in obj:  # the page a person opens: its path (a URI on object stores) in the materialization
            context.add_output_metadata({"report": dg.MetadataValue.path(str(path / REPORT_PAGE))})


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema([dg.TableColumn(field.name, str(field.type)) for field in schema])


class _StoreIOManagerFactory(dg.ConfigurableIOManagerFactory):
    """An IO manager of the store at `root` (a path or an fsspec URL). Every asset stores its value
    through one, so a run creating one is also where the run records the process running it (see
    virnucpro_assets.pipeline.coordination)."""

    root: str
    manager_class: ClassVar[type[StoreIOManager]]

    def create_io_manager(self, context: dg.InitResourceContext) -> StoreIOManager:
        if context.run is not None and context.instance is not None:
            record_run_process(context.instance, context.run.run_id)
        return self.manager_class(Store(self.root))


class TableIOManager(_StoreIOManagerFactory):
    """Parquet tables in the store."""

    manager_class = ParquetIOManager


class TensorIOManager(_StoreIOManagerFactory):
    """Embedding tables (Arrow IPC) in the store."""

    manager_class = ArrowIOManager


class ReportIOManager(_StoreIOManagerFactory):
    """A sample's report files in the store."""

    manager_class = FilesIOManager


def _asset_name(context: dg.InputContext | dg.OutputContext) -> str:
    return context.asset_key.to_user_string()


def _is_shard_partition(key: str) -> bool:
    return "|" in str(key)
