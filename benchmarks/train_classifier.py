"""Training speed of the classifier with train.py's recipe: epochs per second and time until early
stopping, on N rows of synthetic merged features (default 1M x 3328), on a GPU with the optimizer
steps replayed from CUDA graphs (the default there), against the same loop launching every kernel
(eager) and against the CPU. One JSON line per epoch as it ends (so that a run cut short still says
something), one per configuration, then a comparison. Imports torch and numpy only (and the
project's training loop).

  python -m benchmarks.train_classifier --rows 1000000 --baseline-epochs 1 --devices cuda cpu

Configurations: on each CUDA device, the CUDA graphs until early stopping (or --max-epochs), then
eager for --baseline-epochs; on the CPU, --baseline-epochs. The comparison gives the CUDA graphs'
speed-up over eager, how far apart their losses of the epochs both ran are, and the time to early
stopping projected for a baseline from its seconds per epoch and the stopping run's epoch count
(the same recipe on the same rows stops at the same epoch, up to float rounding).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.common import emit
from virnucpro_assets.training.trainer import TrainingConfig, train


def synthetic(rows: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian classes (a shift of 0.05 on every feature): learnable, not trivial."""
    generator = np.random.default_rng(seed)
    labels = (generator.random(rows) < 0.5).astype(np.int64)
    features = generator.standard_normal((rows, width), dtype=np.float32)
    features += labels[:, None].astype(np.float32) * 0.05
    return features, labels


def run(features, labels, device: str, cuda_graphs: bool, max_epochs: int) -> dict:
    path = "cuda graphs" if cuda_graphs else "eager"

    def on_epoch(epoch):
        emit(
            benchmark="train_classifier_epoch", device=device, path=path, epoch=epoch.epoch, seconds=round(epoch.seconds, 3),
            train_loss=round(epoch.train_loss, 6), test_loss=round(epoch.test.loss, 6),
        )  # fmt: skip

    started = time.perf_counter()
    result = train(features, labels, TrainingConfig(max_epochs=max_epochs), device=device, cuda_graphs=cuda_graphs, on_epoch=on_epoch)
    total = time.perf_counter() - started
    seconds = [epoch.seconds for epoch in result.epochs]
    summary = emit(
        benchmark="train_classifier",
        device=device,
        device_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        path=path,
        rows=len(labels),
        width=features.shape[1],
        epochs=len(result.epochs),
        epochs_per_s=round(len(seconds) / sum(seconds), 4),
        seconds_per_epoch=round(float(np.median(seconds)), 3),
        seconds_to_stop=round(total, 2) if result.stopped_early else None,
        seconds_run=round(total, 2),
        stopped_early=result.stopped_early,
        kept_epoch=result.kept_epoch,
        test_auroc=round(result.kept_metrics.auroc, 4),
    )
    return {**summary, "losses": [(epoch.train_loss, epoch.test.loss) for epoch in result.epochs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--max-epochs", type=int, default=200, help="stop here if early stopping has not")
    parser.add_argument("--baseline-epochs", type=int, default=1, help="epochs of the eager GPU loop and of the CPU")
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    args = parser.parse_args()
    made = time.perf_counter()
    features, labels = synthetic(args.rows, args.width)
    emit(benchmark="train_classifier_features", rows=args.rows, width=args.width, seconds=round(time.perf_counter() - made, 2))

    runs = []
    for device in args.devices:
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                emit(benchmark="train_classifier", device=device, skipped="no CUDA device")
                continue
            runs.append(run(features, labels, device, cuda_graphs=True, max_epochs=args.max_epochs))
            runs.append(run(features, labels, device, cuda_graphs=False, max_epochs=args.baseline_epochs))
        else:
            runs.append(run(features, labels, device, cuda_graphs=False, max_epochs=args.baseline_epochs))
    stopping = next((r for r in runs if r["stopped_early"]), None)
    graphed = next((r for r in runs if r["path"] == "cuda graphs"), None)
    eager_gpu = next((r for r in runs if r["path"] == "eager" and r["device"].startswith("cuda")), None)
    comparison = {"benchmark": "train_classifier_comparison", "epochs_to_stop": stopping["epochs"] if stopping else None}
    if graphed and eager_gpu:
        both = min(len(graphed["losses"]), len(eager_gpu["losses"]))
        comparison["cuda_graphs_speedup_over_eager"] = round(eager_gpu["seconds_per_epoch"] / graphed["seconds_per_epoch"], 2)
        comparison["max_loss_difference_graphs_vs_eager"] = float(
            np.max(np.abs(np.array(graphed["losses"][:both]) - np.array(eager_gpu["losses"][:both])))
        )
    if stopping:
        for r in runs:
            if not r["stopped_early"]:
                comparison[f"projected_seconds_to_stop_{r['device']}_{r['path'].replace(' ', '_')}"] = round(
                    r["seconds_per_epoch"] * stopping["epochs"], 1
                )
    print(json.dumps(comparison), flush=True)


if __name__ == "__main__":
    main()
