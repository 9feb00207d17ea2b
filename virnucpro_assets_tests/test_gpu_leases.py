import os
import signal
import subprocess
import sys
import time

import pytest

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.gpu.inventory import Device, discover_devices
from virnucpro_assets.gpu.leases import device_holders, lease_device

DEVICES = [Device("fake:0", "cpu"), Device("fake:1", "cpu")]

HOLD_SCRIPT = """
import sys, time
from pathlib import Path
from virnucpro_assets.gpu.inventory import Device
from virnucpro_assets.gpu.leases import lease_device
devices = [Device("fake:0", "cpu"), Device("fake:1", "cpu")]
with lease_device(devices, Path(sys.argv[1]), {"asset": "esm2_embeddings", "partition": sys.argv[2]}) as device:
    print(device.name, flush=True)
    time.sleep(float(sys.argv[3]))
"""


def hold(lock_dir, partition, seconds):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(lock_dir), partition, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    return process, process.stdout.readline().strip()


def test_fake_and_explicit_inventories(monkeypatch):
    monkeypatch.setenv("VIRNUCPRO_FAKE_GPUS", "3")
    assert [d.name for d in discover_devices()] == ["fake:0", "fake:1", "fake:2"]
    monkeypatch.setenv("VIRNUCPRO_FAKE_GPUS", "x")
    with pytest.raises(ConfigurationError):
        discover_devices()
    monkeypatch.delenv("VIRNUCPRO_FAKE_GPUS")
    monkeypatch.setenv("VIRNUCPRO_GPUS", "0,2")
    assert [d.torch_device for d in discover_devices()] == ["cuda:0", "cuda:2"]


def test_each_process_gets_its_own_device_and_a_third_waits(tmp_path):
    first, first_device = hold(tmp_path, "a|000", 30)
    second, second_device = hold(tmp_path, "a|001", 30)
    try:
        assert {first_device, second_device} == {"fake:0", "fake:1"}
        holders = {h.device: h for h in device_holders(DEVICES, tmp_path)}
        assert all(h.held for h in holders.values())
        assert holders[first_device].details["partition"] == "a|000"
        assert holders[first_device].details["pid"] == first.pid

        started = time.monotonic()
        with pytest.raises(TimeoutError), _time_limit(1.0), lease_device(DEVICES, tmp_path, {"asset": "x"}, poll_seconds=0.05):
            pass
        assert time.monotonic() - started >= 0.9
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()


def test_a_killed_holder_frees_its_device_at_once(tmp_path):
    process, device = hold(tmp_path, "a|000", 60)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not any(h.held for h in device_holders(DEVICES, tmp_path))
    with lease_device(DEVICES, tmp_path, {"asset": "y"}) as leased:
        assert leased.name == "fake:0"


class _time_limit:
    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        signal.signal(signal.SIGALRM, self._raise)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        return False

    @staticmethod
    def _raise(*_):
        raise TimeoutError


def test_a_step_that_must_wait_for_a_device_says_so_at_once(tmp_path):
    """The pool admits two GPU steps per device, so waiting for the lease is a normal state: the
    waiting step is told when it starts waiting, not only after 30 s."""
    import threading

    device = Device("fake:0", "cpu")
    waits, leased = [], threading.Event()

    def second_step():
        with lease_device([device], tmp_path, {"holder": "second"}, poll_seconds=0.05, on_wait=waits.append):
            leased.set()

    with lease_device([device], tmp_path, {"holder": "first"}):
        waiting = threading.Thread(target=second_step)
        waiting.start()
        deadline = time.monotonic() + 30
        while not waits and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(waits) == 1 and waits[0] < 5 and not leased.is_set()
    waiting.join(30)
    assert leased.is_set()
