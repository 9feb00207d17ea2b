"""Which accelerator devices this machine offers to GPU steps, and who each one is.

In order: `VIRNUCPRO_FAKE_GPUS=N` (N simulated devices backed by the CPU, for tests and CI),
`VIRNUCPRO_GPUS=0,2` (explicit CUDA ordinals), else every CUDA device torch sees (which honours
CUDA_VISIBLE_DEVICES). With none, GPU steps run on the CPU, one at a time.

A device's identity is its host name and its UUID ("gpu-host-1/GPU-5b0e…"): a CUDA ordinal names a
different device in each process that sets CUDA_VISIBLE_DEVICES differently, a UUID does not. A
simulated device's UUID is "fake-<i>"; CUDA_VISIBLE_DEVICES entries of that form pin simulated
devices as real ones are pinned by theirs (see virnucpro_assets.deployment.workers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.settings import host_name


@dataclass(frozen=True)
class Device:
    name: str  # what this process calls it: "cuda:0", "fake:1", "cpu"
    torch_device: str  # what tensors are moved to
    uuid: str = ""  # "GPU-…" (CUDA), "fake-1" (simulated); the name where there is none
    host: str = field(default_factory=host_name)

    @property
    def identity(self) -> str:
        """Unique across hosts and processes: what leases and metadata record."""
        return f"{self.host}/{self.uuid or self.name}"


def discover_devices() -> list[Device]:
    fake = os.environ.get("VIRNUCPRO_FAKE_GPUS")
    if fake:
        if not fake.isdigit() or int(fake) < 1:
            raise ConfigurationError(f"VIRNUCPRO_FAKE_GPUS={fake!r}: give a positive number of simulated devices")
        devices = [Device(f"fake:{i}", "cpu", f"fake-{i}") for i in range(int(fake))]
        pinned = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip().startswith("fake-")]
        return [d for d in devices if d.uuid in pinned] if pinned else devices
    explicit = os.environ.get("VIRNUCPRO_GPUS")
    if explicit:
        ordinals = [part.strip() for part in explicit.split(",") if part.strip()]
        if not all(o.isdigit() for o in ordinals):
            raise ConfigurationError(f"VIRNUCPRO_GPUS={explicit!r}: give CUDA device numbers separated by commas")
        return [_cuda_device(int(o)) for o in ordinals]
    import torch

    if torch.cuda.is_available():
        return [_cuda_device(i) for i in range(torch.cuda.device_count())]
    return [Device("cpu", "cpu")]


def _cuda_device(ordinal: int) -> Device:
    """The device with its UUID, once CUDA can say it (a device that does not exist fails at its
    first use, naming it)."""
    import torch

    known = torch.cuda.is_available() and ordinal < torch.cuda.device_count()
    uuid = f"GPU-{torch.cuda.get_device_properties(ordinal).uuid}" if known else ""
    return Device(f"cuda:{ordinal}", f"cuda:{ordinal}", uuid)
