"""torch.compile for the embedders' transformer layers."""

from __future__ import annotations

import importlib
import threading

import torch
from torch import nn

_warm_up: threading.Thread | None = None
_warm_up_lock = threading.Lock()


def start_warm_up() -> None:
    """Import the compiler in a background thread of this process, once. torch.compile's first use
    in a process imports its whole stack (10-14 s on the H100 machine, more than reading ESM-2 3B);
    started when a run begins, that happens before its GPU steps hold a device, not while they do."""
    global _warm_up
    with _warm_up_lock:
        if _warm_up is None:
            _warm_up = threading.Thread(target=_import_compiler, name="torch.compile warm-up", daemon=True)
            _warm_up.start()


def _import_compiler() -> None:
    try:
        torch.compile(nn.Identity(), dynamic=True)  # what compile_layers imports, without tracing anything
        importlib.import_module("torch._inductor.compile_fx")  # what the first compiled call imports
    except Exception:  # compile_layers meets the same problem again, and reports it in its step
        pass


def compile_layers(layers: nn.ModuleList) -> None:
    """Compile each layer for any batch size and length (one graph, not one per shape). The graphs
    are cached on disk by PyTorch's inductor (under /tmp/torchinductor_<user> unless
    TORCHINDUCTOR_CACHE_DIR says otherwise), so only a machine's first process pays the full
    compilation. Where compilation fails (no C compiler, an unsupported GPU), the layers run
    uncompiled: compiling is only ever a speed-up, never a reason for a step to fail."""
    if _warm_up is not None:
        _warm_up.join()  # one thread imports the compiler at a time
    torch._dynamo.config.suppress_errors = True
    for layer in layers:
        layer.compile(dynamic=True)
