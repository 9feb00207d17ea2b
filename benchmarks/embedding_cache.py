"""The embedding cache across samples: GPU tokens saved on a second sample that shares reads with a
first, the cache's own cost against the embedding time, and segments against one file per sequence.

    python -m benchmarks.embedding_cache [--reads 20000] [--shared 0.5] [--shards 8] [--read-length 150]
        [--tiny] [--device cuda] [--genomes ../shared/data/genomes] [--cache-dir DIR] [--repeats 1]
        [--entries 20000] [--per-file-entries 2000] [--scan-entries 1000000] [--scan-segments 10,100,1000]

Samples: the first is `benchmarks/duplicates.py`'s (one phage at high coverage, bacteria, 30 %
exact duplicates); the second takes `--shared` of its reads from the first (new ids) and the rest
from a sample made the same way with another seed (whose phage reads also meet the first's by
chance, as in two runs of one phage). Both go through `split_reads` and `translate_reads` into
`--shards` shards. Each embedder then runs both samples shard by shard through `embed_rows`, as
the embedding assets do: without a cache, then with an empty cache in `--cache-dir` (default: a
temporary directory), which the first sample fills and the second uses. One JSON line per model,
sample and variant (distinct sequences, hits, tokens, seconds embedding, looking up and adding),
one per model with the savings and the cache's overhead (lookup + addition over the embedding time of
the same sample: the first's, with nothing to find, is the cost of having the cache on when it
finds nothing), and one comparing the second sample's result files made from each variant's
vectors (`duplicates.results`). Models: the full-size architectures with random weights (ESM-2 3B
in fp16 on a GPU, DNABERT-S shape), or the demo's tiny ones with --tiny.

Granularity, with random vectors at the real widths (768, 2560): `--entries` entries added as one
segment and looked up again, against `--per-file-entries` of them as one file per sequence (each
written under a temporary name and renamed, unsynced: the cheapest a file per entry can be; read
back by opening each); microseconds per entry. Then a lookup of a shard's keys (`--entries`, all
missing) against caches of `--scan-entries` entries in each of `--scan-segments` segment counts:
the cost of reading every segment's keys.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from benchmarks.common import SHARED_GENOMES, emit
from benchmarks.duplicates import build_models, duplicated_sample, results
from benchmarks.gpu_common import CHUNK_LENGTH, device_name, synchronize
from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.reads import write_fasta
from virnucpro_assets.models.distinct import distinct_sequences, embed_rows
from virnucpro_assets.storage.embedding_cache import CachedVectors, CacheStats, EmbeddingCache, sequence_keys

UNBOUNDED = 10**15
WIDTHS = {"dnabert": 768, "esm2": 2560}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=20_000, help="reads of each sample")
    parser.add_argument("--shared", type=float, default=0.5, help="share of the second sample's reads taken from the first")
    parser.add_argument("--read-length", type=int, default=150)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny models (CPU smoke runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--genomes", type=Path, default=SHARED_GENOMES, help="a folder like ../shared/data/genomes")
    parser.add_argument(
        "--cache-dir", type=Path, help="where the cache goes (e.g. on the store's file system); default: a temporary directory"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant (figures: the fastest), 3 on a busy CPU")
    parser.add_argument("--entries", type=int, default=20_000, help="entries of the granularity measurement")
    parser.add_argument("--per-file-entries", type=int, default=2_000, help="entries written one file each")
    parser.add_argument("--scan-entries", type=int, default=1_000_000, help="entries of the caches a lookup scans")
    parser.add_argument("--scan-segments", default="10,100,1000", help="segment counts of those caches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        samples(args, Path(scratch))
        granularity(args, Path(scratch) / "granularity")


def samples(args, workdir: Path) -> None:
    from virnucpro_assets.sequences.sharding import split_reads
    from virnucpro_assets.sequences.translation import translate_reads

    files = sorted(args.genomes.glob("*/*.fna.gz")) or GENOMES
    first, composition = duplicated_sample(files, args.reads, args.read_length, 0.4, 0.3, seed=0)
    other, _ = duplicated_sample(files, args.reads, args.read_length, 0.4, 0.3, seed=1)
    taken = round(args.shared * args.reads)
    rng = random.Random(2)
    second = [(f"{read_id}:again", sequence) for read_id, sequence in rng.sample(first, taken)] + other[taken:]
    rng.shuffle(second)
    shards = {}
    for name, reads in (("first", first), ("second", second)):
        write_fasta(reads, workdir / f"{name}.fasta")
        tables, _ = split_reads(workdir / f"{name}.fasta", args.shards)
        shards[name] = [translate_reads(t.column("read_id"), t.column("sequence"), CHUNK_LENGTH) for t in tables]
    pairs = {name: pa.concat_tables(tables) for name, tables in shards.items()}
    shared = {
        column: len(set(pairs["second"].column(column).to_pylist()) & set(pairs["first"].column(column).to_pylist()))
        / len(distinct_sequences(pairs["second"].column(column)).sequences)
        for column in ("nucleotide", "protein")
    }
    emit(
        benchmark="embedding_cache",
        reads=args.reads,
        read_length=args.read_length,
        shards=args.shards,
        shared_reads=taken,
        first_sample={key: composition[key] for key in ("phage_reads", "bacterial_reads", "exact_duplicates", "distinct_reads")},
        pairs={name: table.num_rows for name, table in pairs.items()},
        second_sample_distinct_found_in_first={column: round(share, 4) for column, share in shared.items()},
    )

    device = torch.device(args.device)
    embedders, classifier = build_models(workdir / "models", device, args.tiny)
    vectors = {}
    for model, (column, embedder) in embedders.items():
        embedder.embed(shards["first"][0].column(column).to_pylist()[:256])  # CUDA start-up and kernel choice, outside the timings
        precision = str(embedder.dtype).removeprefix("torch.")
        key = embedder.embedding_key or f"random-{model}"  # the full-size random ESM-2 has no checkpoint to hash
        lines, vectors[model] = defaultdict(list), {}
        for repeat in range(args.repeats):
            cache_root = (args.cache_dir or workdir) / f"cache-{model}-{repeat}"  # an empty cache each time
            for variant in ("without cache", "with cache"):
                for name in ("first", "second"):
                    cache = EmbeddingCache(cache_root, key, precision, embedder.dim, UNBOUNDED) if variant == "with cache" else None
                    line, vectors[model][variant, name] = embed_sample(model, variant, name, column, embedder, shards[name], cache, device)
                    lines[variant, name].append(emit(**line, repeat=repeat))
        summarize(model, {run: {field: min(line[field] for line in runs) for field in runs[0]} for run, runs in lines.items()})
    for name in ("first", "second"):
        compared = {
            variant: results(pairs[name], np.hstack([vectors["dnabert"][variant, name], vectors["esm2"][variant, name]]), classifier)
            for variant in ("without cache", "with cache")
        }
        (plain, plain_scores), (cached, cached_scores) = compared.values()
        emit(
            benchmark="embedding_cache",
            comparison=f"{name} sample's result files, without against with the cache",
            device=device_name(device),
            identical_files={file: plain[file] == cached[file] for file in plain},
            decisions_differing=int((plain_scores.argmax(1) != cached_scores.argmax(1)).sum()),
            max_score_diff=float(np.abs(plain_scores - cached_scores).max()),
            identical_vectors={model: bool((v["without cache", name] == v["with cache", name]).all()) for model, v in vectors.items()},
            max_vector_diff={model: float(np.abs(v["without cache", name] - v["with cache", name]).max()) for model, v in vectors.items()},
        )


def embed_sample(model, variant, name, column, embedder, shards, cache, device) -> tuple[dict, np.ndarray]:
    """One sample shard by shard, as the embedding steps run it: its figures and vectors."""
    parts, distinct, tokens, wall = [], 0, 0, 0.0
    for shard in shards:
        synchronize(device)
        started = time.perf_counter()
        result, found = embed_rows(embedder.embed, shard.column(column), cache)
        synchronize(device)
        wall += time.perf_counter() - started
        parts.append(result.vectors)
        distinct += len(found.sequences)
        tokens += result.tokens
    stats = cache.stats if cache else CacheStats()
    embed_s = wall - stats.lookup_s - stats.add_s
    line = dict(
        benchmark="embedding_cache",
        model=model,
        sample=name,
        variant=variant,
        distinct_sequences=distinct,
        cache_hits=stats.hits,
        cache_added=stats.added,
        tokens=tokens,
        wall_s=round(wall, 3),
        embed_s=round(embed_s, 3),
        lookup_s=round(stats.lookup_s, 3),
        add_s=round(stats.add_s, 3),
        # Per distinct sequence: embedding one (a miss), looking one up, adding one.
        embed_us_per_miss=round(embed_s / max(distinct - stats.hits, 1) * 1e6, 1),
        lookup_us=round(stats.lookup_s / max(distinct, 1) * 1e6, 1),
        add_us=round(stats.add_s / max(stats.added, 1) * 1e6, 1),
        cache_mb=round(sum(path.stat().st_size for path in cache.root.glob("v1/*/*.arrow")) / 1e6, 1) if cache else 0.0,
    )
    return line, np.concatenate(parts)


def summarize(model: str, lines: dict) -> None:
    """The savings and overheads, from the fastest of the repeats of each figure."""
    plain, cached = lines["without cache", "second"], lines["with cache", "second"]
    cold = lines["with cache", "first"]
    emit(
        benchmark="embedding_cache",
        model=model,
        savings="second sample, with the cache against without",
        tokens_saved=round(1 - cached["tokens"] / plain["tokens"], 4),
        wall_saved=round(1 - cached["wall_s"] / plain["wall_s"], 4),
        # The cache's own seconds over the embedding seconds of the same run.
        overhead_first_sample=round((cold["lookup_s"] + cold["add_s"]) / max(cold["embed_s"], 1e-9), 4),
        overhead_second_sample=round((cached["lookup_s"] + cached["add_s"]) / max(cached["embed_s"], 1e-9), 4),
        first_sample_wall_ratio=round(cold["wall_s"] / max(lines["without cache", "first"]["wall_s"], 1e-9), 4),
    )


def granularity(args, directory: Path, repeats: int = 3) -> None:
    """Best of `repeats` writes of each, every one into a new directory, and of `repeats` lookups of
    each write (see the module's docstring)."""
    rng = np.random.default_rng(0)
    sequences = [f"MK{index:08d}" for index in range(args.entries)]
    keys = sequence_keys(sequences[: args.per_file_entries])
    for model, width in WIDTHS.items():
        vectors = rng.standard_normal((args.entries, width), dtype=np.float32)
        best = {"segment_add": [], "segment_lookup": [], "file_add": [], "file_lookup": []}
        for repeat in range(repeats):
            cache = EmbeddingCache(directory / f"segments-{model}-{repeat}", "benchmark", "float32", width, UNBOUNDED)
            cache.add(cache.lookup(sequences), vectors)
            best["segment_add"].append(cache.stats.add_s / args.entries)
            files = directory / f"files-{model}-{repeat}"
            best["file_add"].append(_seconds(lambda: _write_files(files, keys, vectors)) / len(keys))
            for _ in range(repeats):  # lookups are cheap to repeat, and the noisiest
                again = EmbeddingCache(cache.root, "benchmark", "float32", width, UNBOUNDED)
                assert again.lookup(sequences).hit.all()
                best["segment_lookup"].append(again.stats.lookup_s / args.entries)
                best["file_lookup"].append(_seconds(lambda: _read_files(files, keys, width)) / len(keys))
        emit(
            benchmark="embedding_cache",
            granularity=model,
            width=width,
            segment_entries=args.entries,
            file_entries=len(keys),
            repeats=repeats,
            **{f"{measure}_us": round(min(seconds) * 1e6, 2) for measure, seconds in best.items()},
        )
    asked = [f"NEW{index:08d}" for index in range(args.entries)]
    for count in map(int, args.scan_segments.split(",")):
        root = directory / f"scan-{count}"
        per_segment = args.scan_entries // count
        for segment in range(count):  # added without a lookup first, which would scan the segments so far
            filler = EmbeddingCache(root, "benchmark", "float32", 1, UNBOUNDED)
            keys = sequence_keys([f"S{segment}-{row}" for row in range(per_segment)])
            seen = frozenset(path.name for path in filler.namespace.glob("*.arrow"))
            filler.add(
                CachedVectors(keys, np.zeros((per_segment, 1), np.float32), np.zeros(per_segment, bool), seen),
                np.zeros((per_segment, 1), np.float32),
            )
        lookups = []
        for _ in range(repeats):
            scanning = EmbeddingCache(root, "benchmark", "float32", 1, UNBOUNDED)
            assert not scanning.lookup(asked).hit.any()
            lookups.append(scanning.stats.lookup_s)
        emit(
            benchmark="embedding_cache",
            scan_segments=count,
            cache_entries=per_segment * count,
            asked=len(asked),
            repeats=repeats,
            lookup_s=round(min(lookups), 4),
        )


def _write_files(directory: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
    for key, vector in zip(keys, vectors):
        name = key.tobytes().hex()
        path = directory / name[:2] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{name}.tmp")
        temporary.write_bytes(vector.tobytes())
        temporary.rename(path)


def _read_files(directory: Path, keys: np.ndarray, width: int) -> np.ndarray:
    found = np.empty((len(keys), width), np.float32)
    for index, key in enumerate(keys):
        name = key.tobytes().hex()
        found[index] = np.frombuffer((directory / name[:2] / name).read_bytes(), np.float32)
    return found


def _seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
