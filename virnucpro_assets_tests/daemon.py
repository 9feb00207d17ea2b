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
        """`dagster-daemon run` for the block; stopped by SIGTERM to its pid, its group killed if it hangs."""
        process = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(CHECKOUT / "workspace.yaml")],
            env=self.env, cwd=CHECKOUT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            with self.dagster() as instance:
                wait_for(lambda: {"QUEUED_RUN_COORDINATOR", "MONITORING"} <= {h.daemon_type for h in instance.get_daemon_heartbeats().values()}, 120, "daemon heartbeats")
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            finally:
                # Code servers and run workers it started share its process group; none may outlive the test.
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


def wait_for(condition, seconds: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
