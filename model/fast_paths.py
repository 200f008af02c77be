"""Which fast paths run where. Each computes what the plain modules compute (tests/test_fast_paths.py compares
them, bit for bit where the maths allows) and is switched on only on the devices where it measured faster
(bench/README.md); so far that is the CPU, the only device measured. With PEBBLE_FAST_PATHS=0 in the environment
nothing is switched on, and training, chat and the server run on the plain modules alone.

| fast path | where | switched on |
| --- | --- | --- |
| one-adapter layers as one fused product; routed rows by index | model/fast_lora.py | CPU |
| attention (and q/k norm, RoPE) in float32 under autocast | model_pebble.Attention.float32 | CPU |
| linear and embedding weights held column-major | model/fast_decode.py | CPU |
| the forward bound once per `generate` call | model/fast_decode.py | CPU |

The trainers switch them on before training, eval_llm and the server once the adapters are loaded.
"""
import os

from torch import nn

from model.fast_decode import bind_forward, hold_weights_column_major
from model.fast_lora import use_fused_lora
from model.model_pebble import Attention


def fast_paths_allowed() -> bool:
    """False when PEBBLE_FAST_PATHS=0: everything runs on the plain path."""
    return os.environ.get("PEBBLE_FAST_PATHS", "1") != "0"


def enable_fast_paths(model: nn.Module) -> list[str]:
    """Switch on the fast paths that measured faster on the device the model is on; returns their names. Call it
    again after attaching adapters to layers that had none (it is idempotent)."""
    if not fast_paths_allowed() or next(model.parameters()).device.type != "cpu":
        return []
    use_fused_lora(model)
    for module in model.modules():
        if isinstance(module, Attention):
            # torch's CPU flash-attention backward is several times slower in bf16 than in float32 at chat
            # lengths, and CPU autocast runs attention in bf16
            module.float32 = True
    hold_weights_column_major(model)
    model.bind_decode = bind_forward
    return ["fused LoRA", "float32 attention", "column-major weights", "bound decode"]
