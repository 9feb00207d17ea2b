"""Each distinct sequence embedded once: GPU tokens and wall time of both embedding stages on a
sample with realistic duplication, with and without the reduction, and whether the result files
come out the same.

    python -m benchmarks.duplicates [--reads 200000] [--shards 8] [--duplicates 0.3] [--phage-share 0.4]
        [--read-length 150] [--tiny] [--device cuda] [--genomes ../shared/data/genomes]

The sample: 150-bp reads of a sequencing run with one phage at high coverage. Of the reads that are
not duplicates, `--phage-share` come from phage T7 (39,937 bp, both strands: 80K read positions, so
at 200,000 reads the phage is at ~200x and many of its reads start at the same place on the same
strand, as in a real run at that depth) and the rest from bacterial genomes (E. coli, H. pylori,
Kutzneria; the bundled Kutzneria piece where ../shared is absent). Then `--duplicates` of the
sample's reads are exact copies of others (PCR and optical duplicates; ids `<read>:dup<k>`), and
everything is shuffled as a run's reads come. The reads go through `split_reads` and
`translate_reads` into the assets' shards (by a hash of the sequence: identical reads share a
shard); the first line describes the sample and how evenly its distinct reads spread over the
shards (`distinct_reads_per_shard_max_over_mean`).

For each shard both embedders run on the shard's pairs: `every pair` as before, and `distinct per
shard` through `embed_rows` as the embedding assets now do. One JSON line per model and
variant (sequences embedded, tokens, seconds, tokens/s), then one per model with the savings and
the distinct sequences of the whole sample (`distinct_in_sample`: what sharding by sequence lets
the per-shard reduction reach, as against the tokens of the same reduction under former ways of
sharding: `tokens_if_round_robin`, read i to shard i mod K, and `tokens_if_by_sequence_as_written`,
a hash of the read as written rather than of either strand), and one line
comparing the two result files (prediction_results.txt, prediction_results_highestscore.csv) made
from each variant's vectors by the same classifier: byte identity, decisions, largest score and
vector differences. Models: the full-size architectures with random weights (ESM-2 3B in fp16 on a
GPU, DNABERT-S shape), or the demo's tiny ones with --tiny.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from benchmarks.common import SHARED_GENOMES, emit
from benchmarks.gpu_common import CHUNK_LENGTH, device_name, synchronize, tokenizer_training_text
from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta
from virnucpro_assets.models.distinct import distinct_sequences, embed_rows

PHAGE = "phage_T7"
BACTERIA = ("Ecoli", "Helicobacter", "Kutzneria")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=200_000)
    parser.add_argument("--read-length", type=int, default=150)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--duplicates", type=float, default=0.3, help="share of the reads that are exact copies of others")
    parser.add_argument("--phage-share", type=float, default=0.4, help="share of the other reads that come from the phage")
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny models (CPU smoke runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--genomes", type=Path, default=SHARED_GENOMES, help="a folder like ../shared/data/genomes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run(args, Path(scratch))


def run(args, workdir: Path) -> None:
    from virnucpro_assets.sequences.sharding import sequence_hashes, split_reads
    from virnucpro_assets.sequences.translation import translate_reads

    files = sorted(args.genomes.glob("*/*.fna.gz")) or GENOMES
    reads, composition = duplicated_sample(files, args.reads, args.read_length, args.phage_share, args.duplicates)
    write_fasta(reads, workdir / "sample.fasta")
    tables, _ = split_reads(workdir / "sample.fasta", args.shards)
    shards = [translate_reads(t.column("read_id"), t.column("sequence"), CHUNK_LENGTH) for t in tables]
    pairs = pa.concat_tables(shards)
    distinct_reads = [len(set(table.column("sequence").to_pylist())) for table in tables]
    emit(
        benchmark="duplicates",
        **composition,
        read_length=args.read_length,
        shards=args.shards,
        distinct_reads_per_shard_max_over_mean=round(max(distinct_reads) * len(tables) / sum(distinct_reads), 4),
        pairs=pairs.num_rows,
        distinct_proteins=len(distinct_sequences(pairs.column("protein")).sequences),
        distinct_nucleotides=len(distinct_sequences(pairs.column("nucleotide")).sequences),
    )

    position = {
        read_id: index for table in tables for read_id, index in zip(*table.select(["read_id", "file_position"]).to_pydict().values())
    }
    sequence_of = {
        read_id: sequence for table in tables for read_id, sequence in zip(*table.select(["read_id", "sequence"]).to_pydict().values())
    }
    read_of_pair = pairs.column("read_id").to_pylist()
    # Where each pair would have been under the former ways of sharding, for the tokens they would leave.
    former = {
        "round_robin": np.array([position[read_id] % args.shards for read_id in read_of_pair]),
        "by_sequence_as_written": (sequence_hashes([sequence_of[read_id] for read_id in read_of_pair]) % np.uint64(args.shards)).astype(
            np.int64
        ),
    }

    device = torch.device(args.device)
    embedders, classifier = build_models(workdir / "models", device, args.tiny)
    vectors = {}
    for model, (column, embedder) in embedders.items():
        embedder.embed(shards[0].column(column).to_pylist()[:256])  # CUDA start-up and kernel choice, outside the timings
        vectors[model] = compare(model, column, embedder, shards, device, former)
    result_files = {
        variant: results(pairs, np.hstack([vectors["dnabert"][variant], vectors["esm2"][variant]]), classifier)
        for variant in ("every pair", "distinct per shard")
    }
    (every, every_scores), (reduced, reduced_scores) = result_files.values()
    emit(
        benchmark="duplicates",
        comparison="result files, every pair against distinct per shard",
        device=device_name(device),
        identical_files={name: every[name] == reduced[name] for name in every},
        decisions_differing=int((every_scores.argmax(1) != reduced_scores.argmax(1)).sum()),
        max_score_diff=float(np.abs(every_scores - reduced_scores).max()),
        max_vector_diff={model: float(np.abs(v["every pair"] - v["distinct per shard"]).max()) for model, v in vectors.items()},
    )


def duplicated_sample(files: list[Path], reads: int, length: int, phage_share: float, duplicate_share: float, seed: int = 0):
    """The sample's reads in file order, and what it is made of (see the module's docstring)."""
    phage = load_genomes([f for f in files if PHAGE in f.name])
    bacteria = load_genomes([f for f in files if any(name in f.name for name in BACTERIA)])
    copies = round(reads * duplicate_share)
    originals = reads - copies
    phage_reads = round(originals * phage_share)
    sample = cut_reads(phage, phage_reads, (length,), seed) + cut_reads(bacteria, originals - phage_reads, (length,), seed + 1)
    rng = random.Random(seed)
    sample += [(f"{read_id}:dup{k}", sequence) for k, (read_id, sequence) in enumerate(rng.choices(sample, k=copies))]
    rng.shuffle(sample)
    composition = {
        "reads": reads,
        "phage_reads": phage_reads,
        "bacterial_reads": originals - phage_reads,
        "exact_duplicates": copies,
        "distinct_reads": len({sequence for _, sequence in sample}),
        "phage": [name for name, _ in phage],
        "bacteria": [name for name, _ in bacteria],
    }
    return sample, composition


def compare(
    model: str, column: str, embedder, shards: list[pa.Table], device: torch.device, former: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Both variants over every shard: a JSON line each, one on the savings; the vectors of each.
    `former`: each pair's shard under a former way of sharding (`round_robin`: read i to shard
    i mod K; `by_sequence_as_written`: a hash of the read as written, not of either strand)."""
    embedded, lines = {}, {}
    for variant in ("every pair", "distinct per shard"):
        parts, sequences, tokens, elapsed = [], 0, 0, 0.0
        for shard in shards:
            synchronize(device)
            started = time.perf_counter()
            if variant == "every pair":
                result = embedder.embed(shard.column(column).to_pylist())
                sequences += shard.num_rows
            else:
                result, distinct = embed_rows(embedder.embed, shard.column(column))
                sequences += len(distinct.sequences)
            synchronize(device)
            elapsed += time.perf_counter() - started
            parts.append(result.vectors)
            tokens += result.tokens
        embedded[variant] = np.concatenate(parts)
        lines[variant] = emit(
            benchmark="duplicates",
            model=model,
            variant=variant,
            pairs=sum(s.num_rows for s in shards),
            sequences_embedded=sequences,
            tokens=tokens,
            embed_s=round(elapsed, 3),
            tokens_per_s=round(tokens / max(elapsed, 1e-9)),
        )
    in_sample = distinct_sequences(pa.concat_arrays([s.column(column).combine_chunks() for s in shards]))
    tokens_of = embedder.tokenized(in_sample.sequences).token_counts
    every, reduced = lines["every pair"], lines["distinct per shard"]

    def tokens_if(shard_of_pair: np.ndarray) -> int:
        _, first_in_shard = np.unique(in_sample.inverse + len(tokens_of) * shard_of_pair, return_index=True)
        return int(tokens_of[in_sample.inverse[first_in_shard]].sum())

    emit(
        benchmark="duplicates",
        model=model,
        savings="distinct per shard against every pair",
        tokens_saved=round(1 - reduced["tokens"] / every["tokens"], 4),
        speedup=round(every["embed_s"] / reduced["embed_s"], 3),
        distinct_in_sample=len(in_sample.sequences),
        tokens_if_distinct_in_sample=int(tokens_of.sum()),
        **{f"tokens_if_{name}": tokens_if(shard_of_pair) for name, shard_of_pair in former.items()},
    )
    return embedded


def build_models(directory: Path, device: torch.device, tiny: bool):
    """{model: (translated_proteins column, embedder)} and the classifier."""
    from virnucpro_assets.demo.models import build_demo_models, random_esm2, write_demo_classifier, write_tiny_dnabert
    from virnucpro_assets.models.classifier import load_classifier
    from virnucpro_assets.models.dnabert2 import DnabertEmbedder
    from virnucpro_assets.models.esm2 import Esm2Embedder
    from virnucpro_assets.models.identity import ModelIdentity

    if tiny:
        demo = build_demo_models(directory, GENOMES, CHUNK_LENGTH)
        esm2 = Esm2Embedder.from_source(str(demo.esm2), device=device)
        dnabert, classifier = demo.dnabert, demo.classifier
    else:
        fair_esm = random_esm2(36, 2560, 40, seed=0, device=device)
        with torch.no_grad():  # the hub stores fp16 weights
            for parameter in fair_esm.parameters():
                parameter.copy_(parameter.half())
        esm2 = Esm2Embedder(fair_esm, fair_esm.alphabet, ModelIdentity("random_esm2_t36_3B", ""), device)
        del fair_esm
        dnabert = write_tiny_dnabert(
            directory / "dnabert_s_random",
            tokenizer_training_text(load_genomes(GENOMES)),
            hidden_size=768,
            num_layers=12,
            num_heads=12,
            vocab_size=4096,
            intermediate_size=3072,
        )
        classifier = directory / f"classifier_{CHUNK_LENGTH}.safetensors"
        write_demo_classifier(classifier, CHUNK_LENGTH, seed=11, feature_width=768 + 2560)
    embedders = {"dnabert": ("nucleotide", DnabertEmbedder.from_source(str(dnabert), device=device)), "esm2": ("protein", esm2)}
    return embedders, load_classifier(classifier, CHUNK_LENGTH)


def results(pairs: pa.Table, features: np.ndarray, classifier) -> tuple[dict[str, bytes], np.ndarray]:
    """The original's two result files of these pairs (shard after shard) and their scores."""
    from virnucpro_assets.results.report import format_highest_scores, format_prediction_results

    scores, decisions = classifier.score(features)
    ids = pairs.column("pair_id").to_pylist()
    files = {
        "prediction_results.txt": format_prediction_results(ids, decisions, scores).encode(),
        "prediction_results_highestscore.csv": format_highest_scores(ids, scores).encode(),
    }
    return files, scores


if __name__ == "__main__":
    main()
