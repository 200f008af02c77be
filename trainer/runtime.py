"""Where and how a run computes: the device (--device), the autocast dtype (--dtype), the torchrun process group,
the optimizer's kernel, frozen weights in the autocast dtype, and glibc's handling of freed memory."""
import contextlib
import ctypes
import functools
import os
import sys
import time

import torch
import torch.distributed as dist

from model.common import PebbleError

DTYPES = ("auto", "bfloat16", "float16", "float32")  # --dtype


def resolve_device(name: str) -> str:
    """--device as a torch device string: auto (cuda if this PyTorch sees a GPU, else cpu), cpu, cuda, cuda:N, mps."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if name == "cpu":
        return name
    if kind == "cuda" and (not index or index.isdigit()):
        if not torch.cuda.is_available():
            raise PebbleError(f"--device {name}: this PyTorch sees no CUDA GPU (a CPU-only build, or no driver); "
                              "use --device cpu, or install PyTorch's CUDA build")
        if index and int(index) >= torch.cuda.device_count():
            raise PebbleError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA device(s)")
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise PebbleError("--device mps: this PyTorch or machine has no Apple GPU backend; use --device cpu")
        return name
    raise PebbleError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


@functools.lru_cache(maxsize=None)
def bf16_is_faster(device: str) -> bool:
    """Time a bf16 and an fp32 matmul here: CPUs without native bf16 emulate it and are slower."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    a32 = torch.randn(512, 512)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = a32.to(dtype)
        for _ in range(3):
            a @ a
        t = time.perf_counter()
        for _ in range(10):
            a @ a
        timings[dtype] = time.perf_counter() - t
    return timings[torch.bfloat16] * 1.2 < timings[torch.float32]


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """The autocast dtype for --dtype (auto: bf16 where it measures faster, else fp32)."""
    if name == "auto":
        return torch.bfloat16 if bf16_is_faster(device) else torch.float32
    return getattr(torch, name)


def autocast(device: str, dtype: torch.dtype):
    """Mixed-precision context for the forward pass (a no-op for fp32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def hold_frozen_linears(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Keep the frozen linear weights in the autocast dtype: autocast then has nothing to cast at every step,
    and the base takes half the memory. Embeddings, norms and the adapters stay float32, so the residual
    stream and the trained weights keep full precision."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
            if module.weight is not model.get_input_embeddings().weight:  # a tied lm_head stays with the embedding
                module.weight.data = module.weight.data.to(dtype)


def pad_multiple(dtype: torch.dtype) -> int:
    """What a batch's width (its longest sample) is rounded up to. In bf16 and fp16 a few widths run faster and
    take less memory: oneDNN prepares and caches its kernels per shape on a CPU, and tensor cores want aligned
    sizes on a GPU. fp32 runs fastest on the longest sample itself: padding is work (bench/README.md)."""
    return 1 if dtype == torch.float32 else 16


def make_optimizer(params: list, lr: float, weight_decay: float, device: str) -> torch.optim.AdamW:
    """AdamW, as one fused kernel per step where torch has one (CPU, CUDA; bench/README.md has the timings)."""
    fused = device.split(":")[0] in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): only it prints and writes files."""
    return not dist.is_initialized() or dist.get_rank() == 0


def setup_distributed(device: str) -> tuple[int, int, str]:
    """Join the torchrun process group if launched by torchrun -> (rank, world_size, device)."""
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return rank, world, device


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MiB for reuse instead of handing them back to the kernel.

    Every step frees and reallocates the same activation-sized tensors; by default glibc maps blocks over
    128 KiB afresh each time, and the kernel then zeroes and faults in every page again (thousands of page
    faults per LoRA step on the demo base). Returns False where this is not glibc on Linux.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
