"""A sample's report as one self-contained HTML page (`report.html`): no scripts, no external
resources, the plot embedded as a base64 data URI, so it opens from a disk, a mail or an object
store alike.

It shows the counts, the score histogram, the reads with the highest virus scores, the models with
their weight hashes, the software versions, the settings and the GPU steps' timings. Models and
timings come from `provenance`: per shard asset, per shard, the metadata its latest
materialization recorded (PROVENANCE_KEYS). Every value is escaped: read ids and sample names are
user data.
"""

from __future__ import annotations

import base64
import html
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata

import polars as pl

REPORT_PAGE = "report.html"
TOP_READS = 20
# {asset: {shard: {metadata key: plain value}}}
Provenance = Mapping[str, Mapping[str, Mapping[str, object]]]
PROVENANCE_KEYS = (
    "model",
    "model_sha256",
    "classifier",
    "classifier_sha256",
    "device",
    "precision",
    "pairs",
    "distinct_sequences",
    "tokens",
    "tokens_per_s",
    "model_load_s",
    "embed_s",
)
# (asset, what it ran, name key, hash key)
MODEL_STEPS = (
    ("dnabert_embeddings", "DNABERT-S", "model", "model_sha256"),
    ("esm2_embeddings", "ESM-2", "model", "model_sha256"),
    ("predictions", "classifier", "classifier", "classifier_sha256"),
)
GPU_STEPS = (("dnabert_embeddings", "DNABERT-S"), ("esm2_embeddings", "ESM-2"))
SOFTWARE = ("virnucpro-assets", "dagster", "torch")
COUNT_LABELS = {
    "reads": "reads",
    "reads_scored": "reads scored (at least one kept frame)",
    "virus_reads": "virus reads (decision virus)",
    "others_reads": "others reads",
    "unscored_reads": "unscored reads",
    "reads_with_a_virus_chunk": "reads with a chunk judged virus (the original's rule)",
    "chunks": "chunks",
    "scored_chunks": "chunks with a kept frame",
    "virus_chunks": "virus chunks",
    "pairs": "pairs (kept frames)",
    "virus_pairs": "virus pairs",
}

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; word-break: break-all; }
.note { color: #555; font-size: 0.9em; }
.warning { color: #a00; }
img { max-width: 100%; }
"""


def render_report(
    *,
    sample: str,
    counts: Mapping[str, int],
    per_read: pl.DataFrame,
    plot_png: bytes,
    provenance: Provenance,
    settings: Mapping[str, object],
    versions: Mapping[str, str] | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The page, from the counts and the per-read table of virnucpro_assets.results.report."""
    generated_at = generated_at or datetime.now(UTC)
    versions = software_versions() if versions is None else versions
    title = f"VirNucPro report: {sample}"
    sections = [
        f"<h1>{_e(title)}</h1>",
        (
            f'<p class="note">Generated {_e(generated_at.isoformat(timespec="seconds"))}. Every read of the sample is in '
            "<code>per_read.tsv</code> beside this page; the original's results are <code>prediction_results.txt</code> "
            "and <code>prediction_results_highestscore.csv</code>.</p>"
        ),
        "<h2>Counts</h2>",
        _counts_table(counts),
        "<h2>Per-read virus scores</h2>",
        f'<img id="histogram" alt="histogram of per-read virus scores" src="data:image/png;base64,{base64.b64encode(plot_png).decode()}">',
        f"<h2>Reads with the highest virus scores (top {TOP_READS})</h2>",
        _top_reads_table(per_read),
        "<h2>Models</h2>",
        _models_table(provenance),
        "<h2>Settings</h2>",
        _key_value_table("settings", settings),
        "<h2>Software</h2>",
        _key_value_table("software", versions),
        "<h2>GPU step timings</h2>",
        _timings_table(provenance),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def software_versions() -> dict[str, str]:
    """Installed versions of the packages that made the results, and Python's."""
    versions = {}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def _counts_table(counts: Mapping[str, int]) -> str:
    rows = "".join(
        f'<tr><th>{_e(COUNT_LABELS.get(key, key))}</th><td class="number" id="count-{_e(key)}">{_e(value)}</td></tr>'
        for key, value in counts.items()
    )
    return f'<table id="counts"><tbody>{rows}</tbody></table>'


def _top_reads_table(per_read: pl.DataFrame) -> str:
    top = (
        per_read.filter(pl.col("max_virus_score").is_not_null())
        .sort("max_virus_score", descending=True, maintain_order=True)
        .head(TOP_READS)
    )
    if top.height == 0:
        return '<p id="top-reads">No read was scored.</p>'
    header = "".join(
        f"<th>{name}</th>"
        for name in ("#", "read", "length", "chunks", "kept frames", "virus chunks / scored", "max virus score", "decision")
    )
    rows = "".join(
        "<tr>"
        f'<td class="number">{rank}</td><td><code>{_e(row["read_id"])}</code></td>'
        f'<td class="number">{_e(row["length"])}</td><td class="number">{_e(row["chunks"])}</td>'
        f'<td class="number">{_e(row["kept_frames"])}</td>'
        f'<td class="number">{_e(row["virus_chunks"])} / {_e(row["scored_chunks"])}</td>'
        f'<td class="number">{row["max_virus_score"]:.4f}</td><td>{_e(row["decision"])}</td>'
        "</tr>"
        for rank, row in enumerate(top.iter_rows(named=True), start=1)
    )
    return f'<table id="top-reads"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'


def _models_table(provenance: Provenance) -> str:
    """One row per model and weight hash; more than one row for a step means its shards were made
    with different weights, which the page says."""
    rows = []
    for asset, label, name_key, hash_key in MODEL_STEPS:
        shards = provenance.get(asset, {})
        used: dict[tuple[str, str], list[str]] = {}
        for shard, recorded in sorted(shards.items()):
            used.setdefault((str(recorded.get(name_key, "not recorded")), str(recorded.get(hash_key, "not recorded"))), []).append(shard)
        if not used:
            rows.append(f"<tr><td>{_e(label)}</td><td colspan=3>no materialization recorded</td></tr>")
        mixed = len(used) > 1
        for (name, digest), used_by in used.items():
            where = "all shards" if not mixed else "shards " + ", ".join(used_by)
            warning = ' <span class="warning">(shards differ: re-materialize the stale ones)</span>' if mixed else ""
            rows.append(f"<tr><td>{_e(label)}</td><td>{_e(name)}</td><td><code>{_e(digest)}</code></td><td>{_e(where)}{warning}</td></tr>")
    return (
        '<table id="models"><thead><tr><th>step</th><th>model</th><th>weights sha256</th><th>used for</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _total(shards: Mapping[str, Mapping[str, object]], key: str) -> float | None:
    """The sum over the shards, or None when a shard did not record it (an older materialization)."""
    values = [recorded.get(key) for recorded in shards.values()]
    return None if any(value is None for value in values) else sum(float(value) for value in values)


def _number(value: float | None, key: str) -> str:
    if value is None:
        return "—"
    if key == "tokens_per_s":
        return f"{value:.1f}"
    return f"{value:.3f}" if key.endswith("_s") else f"{int(value)}"


def _timings_table(provenance: Provenance) -> str:
    rows = []
    for asset, label in GPU_STEPS:
        shards = provenance.get(asset, {})
        for shard, recorded in sorted(shards.items()):
            rows.append(
                f"<tr><td>{_e(label)}</td><td>{_e(shard)}</td>"
                + "".join(f"<td>{_e(recorded.get(key, '—'))}</td>" for key in ("device", "precision"))
                + "".join(
                    f'<td class="number">{_e(recorded.get(key, "—"))}</td>'
                    for key in ("pairs", "distinct_sequences", "model_load_s", "embed_s", "tokens", "tokens_per_s")
                )
                + "</tr>"
            )
        if shards:
            total = {key: _total(shards, key) for key in ("pairs", "distinct_sequences", "model_load_s", "embed_s", "tokens")}
            rate = total["tokens"] / total["embed_s"] if total["tokens"] is not None and total["embed_s"] else None
            rows.append(
                f"<tr><th>{_e(label)}</th><th>all ({len(shards)})</th><td></td><td></td>"
                + "".join(f'<td class="number">{_number(total[key], key)}</td>' for key in total)
                + f'<td class="number">{_number(rate, "tokens_per_s")}</td></tr>'
            )
    if not rows:
        return '<p id="timings">No GPU step materialization recorded.</p>'
    header = "".join(
        f"<th>{name}</th>"
        for name in ("step", "shard", "device", "precision", "pairs", "distinct sequences", "model load s", "embed s", "tokens", "tokens/s")
    )
    return f'<table id="timings"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _key_value_table(name: str, values: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in values.items())
    return f'<table id="{_e(name)}"><tbody>{rows}</tbody></table>'


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
