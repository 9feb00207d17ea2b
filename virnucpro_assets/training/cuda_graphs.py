"""train.py's optimizer steps replayed from CUDA graphs, for training on a GPU.

At train.py's batch of 32 rows a step is some twenty small kernels, and launching them one by one
from Python takes longer than running them (about 2 ms a step on an H200, the GPU mostly idle). A
graph captured once replays the same kernels on the same tensors in the same order, so a replayed
step computes what the eager step computes; only the launches go.

An epoch replays a graph of STEPS_PER_GRAPH steps over whole groups of batches, a one-step graph
over its remaining full batches, and runs a short last batch eagerly. Before each replay the rows
of its batches are copied into the graph's index block. The first steps of training run eagerly
(on the stream the graphs are captured on): they create SGD's momentum buffers and the libraries'
workspaces, which must exist before a capture. A graph holds the learning rate it was captured
with (SGD's update takes it as a constant), so when the scheduler changes it the graphs are
captured again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

STEPS_PER_GRAPH = 32
WARM_UP_STEPS = 3

Step = Callable[[torch.Tensor], torch.Tensor]  # the rows of one batch -> its loss (on the device)
Capture = Callable[[Callable[[], None]], Callable[[], None]]  # work -> what replays it


class CudaGraphCapture:
    """Captures work into a CUDA graph on a stream of its own; the warm-up runs on that stream too."""

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)

    def __call__(self, work: Callable[[], None]) -> Callable[[], None]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            work()
        return graph.replay

    @contextlib.contextmanager
    def warm_up(self):
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            yield
        torch.cuda.current_stream().wait_stream(self.stream)


class GraphedSteps:
    """Runs an epoch's optimizer steps as `step` would, eagerly, one batch after another; `capture`
    turns a block of steps into something that replays it (CudaGraphCapture on a GPU)."""

    def __init__(self, step: Step, batch_size: int, device: torch.device, capture: Capture, warm_up=contextlib.nullcontext):
        self.step, self.batch_size, self.capture, self.warm_up = step, batch_size, capture, warm_up
        self.total = torch.zeros((), device=device)
        self.blocks = {count: torch.zeros((count, batch_size), dtype=torch.int64, device=device) for count in (STEPS_PER_GRAPH, 1)}
        self.replays: dict[int, Callable[[], None]] = {}
        self.captured_rate: float | None = None
        self.warm = False

    def _steps_into_total(self, block: torch.Tensor) -> Callable[[], None]:
        def work():
            for rows in block:
                self.total += self.step(rows)

        return work

    def run_epoch(self, order: torch.Tensor, learning_rate: float) -> tuple[torch.Tensor, int]:
        """The steps over `order` (row indices, batches of batch_size in turn; a last batch of one
        row is skipped, as trainer.train does). Returns the sum of the batch losses and their number."""
        size, steps = self.batch_size, len(order) // self.batch_size
        self.total.zero_()
        done = 0
        if not self.warm:
            with self.warm_up():
                for done in range(1, min(WARM_UP_STEPS, steps) + 1):
                    self.total += self.step(order[(done - 1) * size : done * size])
            self.warm = True
        if self.captured_rate != learning_rate:
            self.replays = {count: self.capture(self._steps_into_total(block)) for count, block in self.blocks.items()}
            self.captured_rate = learning_rate
        for count in (STEPS_PER_GRAPH, 1):
            block = self.blocks[count]
            while steps - done >= count:
                block.copy_(order[done * size : (done + count) * size].view(count, size))
                self.replays[count]()
                done += count
        last = order[done * size :]
        if len(last) >= 2:
            self.total += self.step(last)
            steps += 1
        return self.total, steps
