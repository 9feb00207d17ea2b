"""torch.compile for the embedders' transformer layers."""

from __future__ import annotations

import torch
from torch import nn


def compile_layers(layers: nn.ModuleList) -> None:
    """Compile each layer for any batch size and length (one graph, not one per shape). The graphs
    are cached on disk by PyTorch's inductor (under /tmp/torchinductor_<user> unless
    TORCHINDUCTOR_CACHE_DIR says otherwise), so only a machine's first process pays the full
    compilation. Where compilation fails (no C compiler, an unsupported GPU), the layers run
    uncompiled: compiling is only ever a speed-up, never a reason for a step to fail."""
    torch._dynamo.config.suppress_errors = True
    for layer in layers:
        layer.compile(dynamic=True)
