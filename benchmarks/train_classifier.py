"""Training speed of the classifier with train.py's recipe: epochs per second and time until early
stopping, on N rows of synthetic merged features (default 1M x 3328), on the CPU and on a GPU.
One JSON line per epoch as it ends (so that a run cut short still says something), then one per
device. Imports torch and numpy only (and the project's training loop).

  python -m benchmarks.train_classifier --rows 1000000 --max-epochs 4 --devices cpu cuda
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from virnucpro_assets.training.trainer import TrainingConfig, train


def synthetic(rows: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian classes (a shift of 0.05 on every feature): learnable, not trivial."""
    generator = np.random.default_rng(seed)
    labels = (generator.random(rows) < 0.5).astype(np.int64)
    features = generator.standard_normal((rows, width), dtype=np.float32)
    features += labels[:, None].astype(np.float32) * 0.05
    return features, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--max-epochs", type=int, default=200, help="stop here if early stopping has not")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    args = parser.parse_args()
    made = time.perf_counter()
    features, labels = synthetic(args.rows, args.width)
    made = time.perf_counter() - made
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(json.dumps({"benchmark": "train_classifier", "device": device, "skipped": "no CUDA device"}), flush=True)
            continue
        started = time.perf_counter()
        result = train(
            features,
            labels,
            TrainingConfig(max_epochs=args.max_epochs),
            device=device,
            on_epoch=lambda epoch, device=device: print(
                json.dumps(
                    {
                        "benchmark": "train_classifier_epoch",
                        "device": device,
                        "epoch": epoch.epoch,
                        "seconds": round(epoch.seconds, 3),
                        "train_loss": round(epoch.train_loss, 5),
                        "test_loss": round(epoch.test.loss, 5),
                    }
                ),
                flush=True,
            ),
        )
        total = time.perf_counter() - started
        seconds = [epoch.seconds for epoch in result.epochs]
        print(
            json.dumps(
                {
                    "benchmark": "train_classifier",
                    "device": device,
                    "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
                    "rows": args.rows,
                    "width": args.width,
                    "epochs": len(result.epochs),
                    "epochs_per_s": round(len(seconds) / sum(seconds), 4),
                    "seconds_per_epoch": round(float(np.median(seconds)), 3),
                    "seconds_to_stop": round(total, 2),
                    "stopped_early": result.stopped_early,
                    "kept_epoch": result.kept_epoch,
                    "test_auroc": round(result.kept_metrics.auroc, 4),
                    "features_made_s": round(made, 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
