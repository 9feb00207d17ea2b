"""Real Dagster processes for tests: an instance directory with the project's dagster.yaml and the
tiny demo models, CLI calls against it, and a daemon started and stopped by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from benchmarks.common import running_daemon

CHECKOUT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Instance:
    def __init__(self, root: Path, models, max_concurrent_runs: int | None = None, **settings: str):
        self.home = root / "dagster_home"
        self.home.mkdir(parents=True)
        config = (CHECKOUT / "dagster.yaml").read_text()
        if max_concurrent_runs is not None:  # a 2-core test machine cannot start many runs at once
            config = config.replace("max_concurrent_runs: 32", f"max_concurrent_runs: {max_concurrent_runs}")
        (self.home / "dagster.yaml").write_text(config)
        self.store = root / "store"
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "VIRNUCPRO_STORE": str(self.store),
            "VIRNUCPRO_DNABERT_MODEL": str(models.dnabert),
            "VIRNUCPRO_ESM2_MODEL": str(models.esm2),
            "VIRNUCPRO_CLASSIFIER": str(models.classifier),
            "OMP_NUM_THREADS": "1",
            **settings,
        }

    def cli(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([str(BIN / args[0]), *args[1:]], env=self.env, cwd=CHECKOUT, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def dagster(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    @contextmanager
    def daemon(self):
        """`dagster-daemon run` for the block, once its run queue and run monitoring beat."""
        # The instance's storage exists before the daemon starts, so the two never create it at once.
        with self.dagster() as instance, running_daemon(self.env, CHECKOUT / "workspace.yaml") as process:
            wanted = {"QUEUED_RUN_COORDINATOR", "MONITORING"}
            wait_for(lambda: wanted <= {h.daemon_type for h in instance.get_daemon_heartbeats().values()}, 120, "daemon heartbeats")
            yield process


def freeze_a_step_holding_its_device(holding, seconds: float, what: str) -> dict:
    """SIGSTOP the process of a step while it holds its device, found by polling `holding()` (the
    lease's details of such a step, pid included, or None) and confirmed after the stop: it is then
    certainly mid-step, and stays there until the test lets it go (SIGCONT) or kills it. A step that
    released its device between the read and the stop is let go, and the next one is taken."""

    def frozen():
        if holder := holding():
            os.kill(holder["pid"], signal.SIGSTOP)
            if holding() == holder:
                return holder
            os.kill(holder["pid"], signal.SIGCONT)
        return None

    return wait_for(frozen, seconds, what, poll=0.02)


def wait_for(condition, seconds: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
