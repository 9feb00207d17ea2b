"""`dagster dev` as a test's subprocess: on 127.0.0.1 and a free port, against an instance directory
(virnucpro_assets_tests.daemon.Instance), talked to through the UI's own GraphQL endpoint, and
stopped by its pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from benchmarks.servers import free_port
from virnucpro_assets.processes import group_alive
from virnucpro_assets_tests.daemon import BIN, CHECKOUT, Instance, wait_for

STOP_TIMEOUT_S = 60
FINISHED_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


class Webserver:
    def __init__(self, url: str, log: Path):
        self.url = url
        self.log = log

    def graphql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def code_location_loaded(self) -> bool:
        try:
            data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }")
        except (urllib.error.URLError, ConnectionError):
            return False
        entries = data["workspaceOrError"].get("locationEntries", [])
        return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)

    def launch_run(self, assets: list[str], partition: str) -> str:
        """Materialize `assets` for `partition` as the UI's Materialize button does; returns the run id."""
        workspace = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")["workspaceOrError"]
        [location] = workspace["locationEntries"]
        selector = {
            "repositoryLocationName": location["name"],
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [asset]} for asset in assets],
        }
        launched = self.graphql(
            """mutation ($params: ExecutionParams!) {
                launchRun(executionParams: $params) {
                    __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message }
                }
            }""",
            params={"selector": selector, "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]}},
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def finished_run_status(self, run_id: str, seconds: float) -> str:
        query = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"

        def finished_status() -> str | None:
            status = self.graphql(query, id=run_id)["runOrError"]["status"]
            return status if status in FINISHED_RUN_STATUSES else None

        return wait_for(finished_status, seconds, f"run {run_id} to finish")

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


@contextmanager
def dagster_dev(instance: Instance, log: Path):
    """`dagster dev` for the block, yielding its Webserver once the code location is loaded."""
    port = free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(CHECKOUT / "workspace.yaml")],
            env=instance.env,
            cwd=CHECKOUT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A test runner may ignore SIGINT, and children inherit that; dagster dev must not.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    webserver = Webserver(f"http://127.0.0.1:{port}", log)
    try:
        wait_for(lambda: process.poll() is not None or webserver.code_location_loaded(), 180, "dagster dev to load the code location")
        assert process.poll() is None, f"dagster dev exited with {process.returncode}:\n{webserver.log_tail()}"
        yield webserver
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGINT to the pid, as Ctrl-C: dagster dev stops its webserver, daemon and code servers. Its
    process group (it leads its own session) is killed only if it hangs or leaves a process behind."""
    process.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    deadline = time.monotonic() + 10
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
