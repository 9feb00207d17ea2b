"""Deployment settings read from the environment, each checked with a clear message.

`Settings.from_environment()` reads them all once, when the definitions load
(virnucpro_assets.definitions); nothing reads the environment at import time.

| variable | default | meaning |
|---|---|---|
| VIRNUCPRO_STORE | $DAGSTER_HOME/store, else ~/.virnucpro/store | root of all outputs: a path or an fsspec URL (s3://bucket/prefix) |
| VIRNUCPRO_SHARDS | 8 | shards per sample (see README: "Shards") |
| VIRNUCPRO_CHUNK_LENGTH | 500 | chunk length, 300 or 500; must match the classifier |
| VIRNUCPRO_VIRUS_THRESHOLD | 0.5 | per_read.tsv calls a read `virus` when its highest score2 is at least this (0 to 1) |
| VIRNUCPRO_DNABERT_MODEL | zhihan1996/DNABERT-S | Hugging Face repo id or local directory |
| VIRNUCPRO_ESM2_MODEL | esm2_t36_3B_UR50D | fair-esm model name or checkpoint file |
| VIRNUCPRO_CLASSIFIER | (none) | 300_model.pth / 500_model.pth, native .safetensors, or trained:<set>-<length> |
| VIRNUCPRO_TRAINING_BLOCK_SIZE | 10000 | pairs per block in the training class sampling (features_extract.py's 10,000) |
| VIRNUCPRO_MIN_TEST_AUROC | 0.9 | the floor of the trained classifier's test-AUROC check |
| VIRNUCPRO_INBOX | $DAGSTER_HOME/inbox, else ~/.virnucpro/inbox | directory the inbox sensor watches |
| VIRNUCPRO_INBOX_FOLLOW_LINKS | 0 | 1: the inbox also takes symbolic links to files outside it (by default they are ignored) |
| VIRNUCPRO_SENSOR_INTERVAL | 5 | seconds between evaluations of the inbox and automation sensors (5 at least: Dagster's daemon loop) |
| VIRNUCPRO_POOL_RECHECK_S | 1 | most seconds between a blocked GPU step's checks for a gpu pool slot (15: Dagster's backoff) |
| VIRNUCPRO_PRECISION | auto | auto (fp32 on CPU, fp16 on GPU), fp32, fp16 or bf16 |
| VIRNUCPRO_COMPILE | esm2 | models whose layers are torch.compile'd on a GPU: esm2, dnabert, both comma-separated, or none |
| VIRNUCPRO_EMBEDDING_CACHE | off | on (both models), esm2 or dnabert: later samples reuse earlier ones' vectors (see the README) |
| VIRNUCPRO_EMBEDDING_CACHE_MAX_GB | 100 | the cache's size bound in GB (10^9 bytes); least recently used segments are deleted past it |
| VIRNUCPRO_GPUS | (every CUDA device) | CUDA device numbers GPU steps may use, e.g. 0,2 |
| VIRNUCPRO_FAKE_GPUS | (unset) | N simulated CPU-backed devices, for tests |
| VIRNUCPRO_HOST_NAME | (the host's name) | this host's name in device identities and run records (tests simulate hosts with it) |
| VIRNUCPRO_EXECUTOR | in_process | how runs execute steps: in_process (one machine), celery (workers on many hosts), k8s (a pod per step) |
| VIRNUCPRO_CELERY_BROKER | (none; needed for celery) | the Celery broker, e.g. redis://broker-host:6379/0 |
| VIRNUCPRO_CELERY_BACKEND | the broker | the Celery result backend |
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.sequences.chunking import SUPPORTED_CHUNK_LENGTHS

DEFAULT_SHARDS = 8
DEFAULT_CHUNK_LENGTH = 500
# score2 >= 0.5 is score2 >= score1: the classifier's own boundary (see virnucpro_assets.results.report).
DEFAULT_VIRUS_THRESHOLD = 0.5
DEFAULT_SENSOR_INTERVAL = 5
DEFAULT_POOL_RECHECK_S = 1.0
DEFAULT_DNABERT_MODEL = "zhihan1996/DNABERT-S"
DEFAULT_ESM2_MODEL = "esm2_t36_3B_UR50D"
EXECUTORS = ("in_process", "celery", "k8s")
DEFAULT_EMBEDDING_CACHE_MAX_GB = 100.0
# VIRNUCPRO_EMBEDDING_CACHE's values and the models (ModelsResource fields) each caches.
EMBEDDING_CACHE_CHOICES = {"off": (), "on": ("dnabert", "esm2"), "esm2": ("esm2",), "dnabert": ("dnabert",)}


@dataclass(frozen=True)
class Settings:
    store: str
    shards: int
    chunk_length: int
    sensor_interval: int
    dnabert_model: str
    esm2_model: str
    classifier: str
    precision: str
    compile: str
    inbox: Path
    inbox_follows_links: bool
    virus_threshold: float = DEFAULT_VIRUS_THRESHOLD
    training_block_size: int = 10_000
    min_test_auroc: float = 0.9
    executor: str = "in_process"
    celery_broker: str = ""
    celery_backend: str = ""
    pool_recheck_s: float = DEFAULT_POOL_RECHECK_S
    embedding_cache: str = "off"
    embedding_cache_max_gb: float = DEFAULT_EMBEDDING_CACHE_MAX_GB

    @classmethod
    def from_environment(cls) -> Settings:
        store = store_root()
        return cls(
            store=store,
            shards=shard_count(),
            chunk_length=chunk_length(),
            sensor_interval=sensor_interval(),
            dnabert_model=model_source("VIRNUCPRO_DNABERT_MODEL", DEFAULT_DNABERT_MODEL),
            esm2_model=model_source("VIRNUCPRO_ESM2_MODEL", DEFAULT_ESM2_MODEL),
            classifier=resolve_classifier(model_source("VIRNUCPRO_CLASSIFIER", ""), store),
            precision=model_source("VIRNUCPRO_PRECISION", "auto"),
            compile=model_source("VIRNUCPRO_COMPILE", "esm2"),
            inbox=inbox_dir(),
            inbox_follows_links=inbox_follows_links(),
            virus_threshold=virus_threshold(),
            training_block_size=_whole_number("VIRNUCPRO_TRAINING_BLOCK_SIZE", 10_000),
            min_test_auroc=_fraction(os.environ.get("VIRNUCPRO_MIN_TEST_AUROC", "0.9"), "VIRNUCPRO_MIN_TEST_AUROC"),
            executor=executor(),
            celery_broker=celery_broker(),
            celery_backend=model_source("VIRNUCPRO_CELERY_BACKEND", "") or celery_broker(),
            pool_recheck_s=pool_recheck_s(),
            embedding_cache=embedding_cache(store),
            embedding_cache_max_gb=embedding_cache_max_gb(),
        )


def store_root() -> str:
    """The store's root: a local path (made absolute) or an fsspec URL, kept as written."""
    value = os.environ.get("VIRNUCPRO_STORE", "")
    if "://" in value:
        return value
    return str(_directory("VIRNUCPRO_STORE", "store").absolute())


def inbox_dir() -> Path:
    return _directory("VIRNUCPRO_INBOX", "inbox")


def inbox_follows_links() -> bool:
    value = os.environ.get("VIRNUCPRO_INBOX_FOLLOW_LINKS", "0")
    if value not in ("0", "1"):
        raise ConfigurationError(f"VIRNUCPRO_INBOX_FOLLOW_LINKS={value!r}: give 1 (take links to files outside the inbox) or 0")
    return value == "1"


def _directory(variable: str, name: str) -> Path:
    """$variable if set, else <name> under $DAGSTER_HOME, else under ~/.virnucpro."""
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser()
    return instance_directory() / name


def instance_directory() -> Path:
    """$DAGSTER_HOME, else ~/.virnucpro: where this host keeps what is not in the store."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home).expanduser() if home else Path.home() / ".virnucpro"


def pool_recheck_s() -> float:
    value = os.environ.get("VIRNUCPRO_POOL_RECHECK_S", str(DEFAULT_POOL_RECHECK_S))
    return _number(value, "VIRNUCPRO_POOL_RECHECK_S", lambda s: 0.1 <= s <= 15, "give seconds from 0.1 to 15 (15: Dagster's own backoff)")


def shard_count() -> int:
    value = os.environ.get("VIRNUCPRO_SHARDS", str(DEFAULT_SHARDS))
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise ConfigurationError(f"VIRNUCPRO_SHARDS={value!r}: give a whole number of shards from 1 to 1000")
    return int(value)


def sensor_interval() -> int:
    value = os.environ.get("VIRNUCPRO_SENSOR_INTERVAL", str(DEFAULT_SENSOR_INTERVAL))
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"VIRNUCPRO_SENSOR_INTERVAL={value!r}: give a whole number of seconds, at least 1")
    return int(value)


def chunk_length() -> int:
    value = os.environ.get("VIRNUCPRO_CHUNK_LENGTH", str(DEFAULT_CHUNK_LENGTH))
    return check_chunk_length(value, "VIRNUCPRO_CHUNK_LENGTH")


def check_chunk_length(value: int | str, source: str) -> int:
    if str(value) not in {str(c) for c in SUPPORTED_CHUNK_LENGTHS}:
        raise ConfigurationError(f"{source}={value!r}: VirNucPro's classifiers exist for chunk lengths 300 and 500 only")
    return int(value)


def virus_threshold() -> float:
    value = os.environ.get("VIRNUCPRO_VIRUS_THRESHOLD", str(DEFAULT_VIRUS_THRESHOLD))
    return check_virus_threshold(value, "VIRNUCPRO_VIRUS_THRESHOLD")


def check_virus_threshold(value: float | str, source: str) -> float:
    return _fraction(value, source, "give the virus score a read needs to be called virus, a number from 0 to 1")


def host_name() -> str:
    """This host's name as device identities and run records give it."""
    return os.environ.get("VIRNUCPRO_HOST_NAME") or socket.gethostname()


def executor() -> str:
    value = os.environ.get("VIRNUCPRO_EXECUTOR", "in_process")
    if value not in EXECUTORS:
        raise ConfigurationError(f"VIRNUCPRO_EXECUTOR={value!r}: give one of {', '.join(EXECUTORS)}")
    if value == "celery" and not celery_broker():
        raise ConfigurationError("VIRNUCPRO_EXECUTOR=celery needs VIRNUCPRO_CELERY_BROKER, the broker's URL (e.g. redis://host:6379/0)")
    return value


def celery_broker() -> str:
    return os.environ.get("VIRNUCPRO_CELERY_BROKER", "")


def embedding_cache(store: str) -> str:
    value = check_embedding_cache(os.environ.get("VIRNUCPRO_EMBEDDING_CACHE", "off"), "VIRNUCPRO_EMBEDDING_CACHE")
    if value != "off" and is_url_store(store):
        raise ConfigurationError(
            f"VIRNUCPRO_EMBEDDING_CACHE={value} needs a file-system store (its writers take a file lock), not {store}; "
            "use a local or shared file-system path for VIRNUCPRO_STORE, or leave the cache off"
        )
    return value


def check_embedding_cache(value: str, source: str) -> str:
    if value not in EMBEDDING_CACHE_CHOICES:
        raise ConfigurationError(
            f"{source}={value!r}: give on (reuse both models' vectors across samples), esm2 or dnabert (that model's only), or off"
        )
    return value


def embedding_cache_max_gb() -> float:
    value = os.environ.get("VIRNUCPRO_EMBEDDING_CACHE_MAX_GB", str(DEFAULT_EMBEDDING_CACHE_MAX_GB))
    return check_embedding_cache_max_gb(value, "VIRNUCPRO_EMBEDDING_CACHE_MAX_GB")


def check_embedding_cache_max_gb(value: float | str, source: str) -> float:
    return _number(value, source, lambda gb: 0 < gb < math.inf, "give the embedding cache's size bound in GB, a number above 0")


def model_source(variable: str, default: str) -> str:
    return os.environ.get(variable) or default


TRAINED_PREFIX = "trained:"


def resolve_classifier(source: str, store: str) -> str:
    """`trained:<set>-<chunk length>` names the `classifier` asset's partition in a file-system
    store: its classifier.safetensors; anything else is a path kept as written."""
    if not source.startswith(TRAINED_PREFIX):
        return source
    from virnucpro_assets.storage import Store

    partition = source.removeprefix(TRAINED_PREFIX)
    if is_url_store(store):
        raise ConfigurationError(
            f"VIRNUCPRO_CLASSIFIER={source!r} needs a file-system store; copy the classifier out of {store} and give its path"
        )
    return str(Store(store).sample_dir("classifier", partition) / "classifier.safetensors")


def is_url_store(store: str) -> bool:
    return "://" in store


def _whole_number(variable: str, default: int) -> int:
    value = os.environ.get(variable, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{variable}={value!r}: give a whole number, at least 1")
    return int(value)


def _fraction(value: float | str, source: str, hint: str = "give a number from 0 to 1") -> float:
    return _number(value, source, lambda number: 0.0 <= number <= 1.0, hint)


def _number(value: float | str, source: str, accepted: Callable[[float], bool], hint: str) -> float:
    """float(value) if `accepted` takes it (never NaN), else a ConfigurationError "<source>=<value>: <hint>"."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not accepted(number):
        raise ConfigurationError(f"{source}={value!r}: {hint}")
    return number
