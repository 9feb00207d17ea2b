"""One GPU step per device, across every process of the machine.

A lease is an exclusive `flock` on `<lock dir>/<device>.lock`. The kernel drops it when the holding
process exits, however it exits (kill -9 included), so a crashed step never keeps its device. The
lock file also records who holds it, for `virnucpro-assets devices`.

Lock files are named by the device's UUID, not its CUDA ordinal: two Celery workers of one host,
each pinned to its own GPU by CUDA_VISIBLE_DEVICES, both call theirs cuda:0. A lease is a host's
own business (its lock directory is local, under $DAGSTER_HOME); across hosts the host name in the
device identity keeps them apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from virnucpro_assets.gpu.inventory import Device


@dataclass(frozen=True)
class Holder:
    device: str
    held: bool
    details: dict


def _lock_file(lock_dir: Path, device: Device) -> Path:
    return lock_dir / f"{(device.uuid or device.name).replace(':', '-')}.lock"


@contextmanager
def lease_device(devices: list[Device], lock_dir: Path, holder: dict, poll_seconds: float = 0.2, on_wait=None) -> Iterator[Device]:
    """Hold the first free device of `devices` for the duration of the block, waiting while all are
    busy (`on_wait(seconds_waited)` is called when the waiting starts, then about every 30 s)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited_since = time.monotonic()
    next_report = 0.0
    while True:
        for device in devices:
            handle = open(_lock_file(lock_dir, device), "a+")  # noqa: SIM115 (held for the lease, closed on release)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps({**holder, "device": device.identity, "pid": os.getpid(), "since": time.time()}))
                handle.flush()
                yield device
            finally:
                handle.truncate(0)
                handle.close()  # closing releases the flock
            return
        waited = time.monotonic() - waited_since
        if on_wait is not None and waited >= next_report:
            on_wait(waited)
            next_report += 30.0
        time.sleep(poll_seconds)


def device_holders(devices: list[Device], lock_dir: Path) -> list[Holder]:
    """For each device: is it leased now, and by whom (as the holder recorded it)."""
    holders = []
    for device in devices:
        path = _lock_file(lock_dir, device)
        if not path.exists():
            holders.append(Holder(device.name, False, {}))
            continue
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                text = handle.read()
                holders.append(Holder(device.name, True, json.loads(text) if text.strip() else {}))
                continue
            fcntl.flock(handle, fcntl.LOCK_UN)
            holders.append(Holder(device.name, False, {}))
    return holders
