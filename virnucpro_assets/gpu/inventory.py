"""Which accelerator devices this machine offers to GPU steps.

In order: `VIRNUCPRO_FAKE_GPUS=N` (N simulated devices backed by the CPU, for tests and CI),
`VIRNUCPRO_GPUS=0,2` (explicit CUDA ordinals), else every CUDA device torch sees (which honours
CUDA_VISIBLE_DEVICES). With none, GPU steps run on the CPU, one at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from virnucpro_assets.errors import ConfigurationError


@dataclass(frozen=True)
class Device:
    name: str  # what leases and metadata call it: "cuda:0", "fake:1", "cpu"
    torch_device: str  # what tensors are moved to


def discover_devices() -> list[Device]:
    fake = os.environ.get("VIRNUCPRO_FAKE_GPUS")
    if fake:
        if not fake.isdigit() or int(fake) < 1:
            raise ConfigurationError(f"VIRNUCPRO_FAKE_GPUS={fake!r}: give a positive number of simulated devices")
        return [Device(f"fake:{i}", "cpu") for i in range(int(fake))]
    explicit = os.environ.get("VIRNUCPRO_GPUS")
    if explicit:
        ordinals = [part.strip() for part in explicit.split(",") if part.strip()]
        if not all(o.isdigit() for o in ordinals):
            raise ConfigurationError(f"VIRNUCPRO_GPUS={explicit!r}: give CUDA device numbers separated by commas")
        return [Device(f"cuda:{o}", f"cuda:{o}") for o in ordinals]
    import torch

    if torch.cuda.is_available():
        return [Device(f"cuda:{i}", f"cuda:{i}") for i in range(torch.cuda.device_count())]
    return [Device("cpu", "cpu")]
