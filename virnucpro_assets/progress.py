"""Progress of one sample through its runs, for `virnucpro-assets run`.

Read from what Dagster stores: while a run goes, a background thread reads the run's new events
from the instance (step starts, asset materializations with their `tokens` metadata, the steps'
own log lines of level INFO and up) twice a second. On a terminal it is a tqdm bar over the sample's asset
partitions (stage, shards done, GPU tokens, ETA); otherwise a plain line per finished step.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

POLL_S = 0.5
PLAIN_LOG_INTERVAL_S = 10.0  # plain output repeats a step's own log lines at most this often


class RunProgress:
    """Observer for operations.materialize_sample: `stages` as sample_stages gives them."""

    def __init__(self, sample: str, stages: list[tuple[list[str], list[str]]], stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream or sys.stderr
        self.sample = sample
        self.total = sum(len(assets) * len(keys) for assets, keys in stages)
        self.shard_assets = set(next((assets for assets, keys in stages if keys and "|" in keys[0]), []))
        self.shards = next((len(keys) for assets, keys in stages if keys and "|" in keys[0]), 0)
        self.done = 0
        self.tokens = 0
        self.by_shard: dict[str, set[str]] = {}
        self.step = ""
        self.started = time.monotonic()
        self.last_plain_log = 0.0
        self.bar = None
        if bar if bar is not None else self.stream.isatty():
            from tqdm import tqdm

            # A terminal that reports no size (a pseudo-terminal without one) gets 100 x 20: tqdm
            # would otherwise draw nothing.
            sized = shutil.get_terminal_size((0, 0)).columns > 0
            self.bar = tqdm(
                total=self.total,
                file=self.stream,
                unit="step",
                desc=sample,
                dynamic_ncols=sized,
                ncols=None if sized else 100,
                nrows=None if sized else 20,
            )

    @contextmanager
    def watching(self, instance, tags: dict[str, str]) -> Iterator[None]:
        """Follow the run tagged `tags` while the block runs it, then read what is left of its events."""
        stop = threading.Event()
        cursor = _Cursor(instance, tags)
        thread = threading.Thread(target=self._follow, args=(cursor, stop), daemon=True, name="virnucpro-progress")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            for record in cursor.new_records():
                self.handle(record)

    def _follow(self, cursor: _Cursor, stop: threading.Event) -> None:
        from sqlalchemy.exc import OperationalError

        while not stop.wait(POLL_S):
            try:
                records = cursor.new_records()
            except OperationalError:  # sqlite busy with the run's own writes: read on the next tick
                continue
            for record in records:
                self.handle(record)

    def handle(self, record) -> None:
        import dagster as dg

        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            if entry.level >= logging.INFO and entry.user_message and self.step:
                self._step_log(entry.user_message)
            return
        if event.event_type == dg.DagsterEventType.STEP_START:
            self.step = f"{entry.step_key} [{event.partition}]" if event.partition else str(entry.step_key)
            if self.bar is not None:
                self.bar.set_description_str(f"{self.sample}: {self.step}")
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._materialized(entry.asset_materialization)

    def _materialized(self, materialization) -> None:
        asset = materialization.asset_key.to_user_string()
        tokens = materialization.metadata.get("tokens")
        step_tokens = int(tokens.value) if tokens is not None else 0
        self.tokens += step_tokens
        self.done += 1
        if asset in self.shard_assets:
            self.by_shard.setdefault(str(materialization.partition), set()).add(asset)
        shards_done = sum(assets >= self.shard_assets for assets in self.by_shard.values())
        if self.bar is not None:
            self.bar.set_postfix_str(f"shards {shards_done}/{self.shards}, GPU tokens {self.tokens:,}", refresh=False)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        tokens_note = f", {step_tokens:,} tokens" if step_tokens else ""
        print(
            f"[{self.done}/{self.total}] {asset} [{materialization.partition}] done{tokens_note}; "
            f"shards {shards_done}/{self.shards}; elapsed {_clock(elapsed)}, eta {_clock(eta)}",
            file=self.stream,
            flush=True,
        )

    def _step_log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{self.sample}: {self.step}: {message[:60]}")
            return
        now = time.monotonic()
        if now - self.last_plain_log >= PLAIN_LOG_INTERVAL_S:
            self.last_plain_log = now
            print(f"    {self.step}: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Cursor:
    """The events of the run with `tags` not read yet (none until the run exists)."""

    def __init__(self, instance, tags: dict[str, str]):
        self.instance = instance
        self.tags = tags
        self.run_id: str | None = None
        self.cursor: str | None = None

    def new_records(self) -> list:
        import dagster as dg

        if self.run_id is None:
            runs = self.instance.get_run_records(filters=dg.RunsFilter(tags=self.tags), limit=1)
            if not runs:
                return []
            self.run_id = runs[0].dagster_run.run_id
        connection = self.instance.get_records_for_run(self.run_id, cursor=self.cursor)
        self.cursor = connection.cursor
        return list(connection.records)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
