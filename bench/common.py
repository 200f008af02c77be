"""What every benchmark row shares: side-by-side timing, peak-memory measurement, the machine line,
the data batches and the models (demo base, LoRA copies, a saved base and adapters on disk).
"""
import copy
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dataset.lm_dataset import IGNORE_INDEX, PadCollator, SFTDataset
from model.chat import encode_prompt
from model.checkpoint import load_model, save_model
from model.common import REPO_ROOT
from model.fast_paths import enable_fast_paths
from model.loading import load_tokenizer
from model.lora_files import save_lora
from model.model_lora import apply_lora
from model.model_pebble import PebbleConfig, PebbleForCausalLM
from trainer.config import LoRATrainConfig
from trainer.evaluation import first_user_turns
from trainer.runtime import autocast, hold_frozen_linears, make_optimizer
from trainer.schedule import epoch_batches

DEMO_BASE = REPO_ROOT / "out" / "full_sft_256.safetensors"
DATA = REPO_ROOT / "dataset" / "lora_identity.jsonl"
PROMPTS = REPO_ROOT / "dataset" / "lora_identity_eval.jsonl"
MAX_SEQ_LEN = 340  # MiniMind's SFT/LoRA max_seq_len: what "pad every sample" pads to

Batch = dict[str, torch.Tensor]


# ---------------------------------------------------------------- timing and memory

def seed_all(seed: int = 0) -> None:
    """Seed Python and torch, so that every row builds the same weights and batches on every run."""
    random.seed(seed)
    torch.manual_seed(seed)


def interleave(arms: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each arm, run round-robin (A B, B A, A B, ...) so drift in machine load hits every
    arm alike; the first `warmup` rounds are run but not recorded."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(warmup + repeats):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for name in order:
            t0 = time.perf_counter()
            arms[name]()
            elapsed = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(elapsed)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """Interquartile range / median of repeated timings: how noisy this machine was for them."""
    if len(xs) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return (q3 - q1) / statistics.median(xs)


def _walk(events):
    for e in events:
        yield e
        yield from _walk(e.children)


def peak_alloc_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes held by the CPU allocator during fn() above the level at its start.

    torch has no CPU allocator statistics, so this replays the allocation and free events that
    torch.profiler(profile_memory=True) records, in time order, and keeps the running maximum. Frees of
    tensors allocated before the call are not reported by the profiler, so the figure can only err high.
    """
    from torch._C._profiler import _EventType

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in _walk(prof.profiler.kineto_results.experimental_event_tree())
              if e.tag == _EventType.Allocation]
    running = peak = 0
    for e in sorted(events, key=lambda e: e.start_time_ns):
        running += e.extra_fields.alloc_size
        peak = max(peak, running)
    return peak


def tensor_bytes(*groups) -> int:
    """Bytes of the distinct storages behind the tensors in groups (tied weights counted once)."""
    storages = {}
    for group in groups:
        for t in group:
            if torch.is_tensor(t):
                s = t.untyped_storage()
                storages[s.data_ptr()] = s.nbytes()
    return sum(storages.values())


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]


# ---------------------------------------------------------------- the machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The matmul-relevant ISA flags of this CPU (bf16 and AMX support)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]


def machine_line(dtype: torch.dtype) -> str:
    return (f"CPU: {cpu_model()} ({', '.join(cpu_flags()) or 'no avx flags'}); {os.cpu_count()} cores, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
            f"autocast dtype chosen by resolve_dtype('auto', 'cpu'): {str(dtype).replace('torch.', '')}")


class OtherLoad:
    """Share of all cores that other processes kept busy since start(): /proc/stat's busy time minus ours.

    With torch's default of one thread per core, any other busy process makes the threads wait for each
    other at every parallel region, and small ops slow down many times over, so figures are only
    trustworthy when this is near zero.
    """

    def __init__(self):
        self.start()

    @staticmethod
    def _ticks() -> tuple[float, float, float]:
        with open("/proc/stat", encoding="utf-8") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        own = os.times()  # this process and the children it has waited for (row 11's trainer)
        # (all, busy, ours) in seconds summed over cores; idle and iowait are not busy
        return (sum(values) / hz, (sum(values) - values[3] - values[4]) / hz,
                own.user + own.system + own.children_user + own.children_system)

    def start(self) -> None:
        try:
            self.t0 = self._ticks()
        except (OSError, ValueError):
            self.t0 = None

    def share(self) -> float:
        """Others' busy share since start() (NaN where /proc/stat is missing)."""
        if self.t0 is None:
            return float("nan")
        total, busy, own = (b - a for a, b in zip(self.t0, self._ticks()))
        return max(0.0, busy - own) / max(total, 1e-9)


# ---------------------------------------------------------------- data

def load_data(max_seq_len: int = MAX_SEQ_LEN) -> tuple[object, SFTDataset]:
    """(tokenizer, the identity LoRA data set) as train_lora.py builds them."""
    tokenizer = load_tokenizer("model")
    return tokenizer, SFTDataset(DATA, tokenizer, max_seq_len)


def representative_batches(data: SFTDataset, batch_size: int, count: int, seed: int = 42) -> list[list[int]]:
    """`count` batches of epoch 0 (length-grouped, as train() sees them) at evenly spaced quantiles of their
    padded length, so a few steps stand for a whole epoch's mix of short and long batches."""
    batches = epoch_batches(data.lengths, batch_size, seed, 0)
    batches.sort(key=lambda b: max(data.lengths[i] for i in b))
    return [batches[int((k + 0.5) * len(batches) / count)] for k in range(count)]


def collate(data: SFTDataset, indices: list[int], pad_to: Optional[int] = None) -> Batch:
    """PadCollator's batch (padded to its longest sample), or padded further to pad_to tokens (MiniMind's way)."""
    batch = PadCollator(pad_id=0, max_seq_len=data.max_seq_len)([data[i] for i in indices])
    if pad_to is not None:
        extra = pad_to - batch["input_ids"].shape[1]
        batch = {"input_ids": F.pad(batch["input_ids"], (0, extra), value=0),
                 "labels": F.pad(batch["labels"], (0, extra), value=IGNORE_INDEX),
                 "attention_mask": F.pad(batch["attention_mask"], (0, extra), value=0)}
    return batch


def real_tokens(batches: list[Batch]) -> int:
    return sum(int(b["attention_mask"].sum()) for b in batches)


def encode_prompts(tokenizer, count: int) -> list[list[int]]:
    """Token ids of the first `count` user prompts of the held-out identity file, as chat.py encodes them."""
    return [encode_prompt(tokenizer, turns[-1:]) for turns in first_user_turns(PROMPTS, limit=count)]


# ---------------------------------------------------------------- models

@dataclass
class Sizes:
    """Model shapes for one benchmark mode (full: the demo and MiniMind-3 sizes; quick: tiny ones)."""

    demo: dict
    large: dict  # the "MiniMind-3 size" of row 10


FULL_SIZES = Sizes(demo=dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4),
                   large=dict(hidden_size=768, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4))
QUICK_SIZES = Sizes(demo=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
                    large=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))


def random_model(shape: dict, vocab_size: int = 6400, seed: int = 0) -> PebbleForCausalLM:
    """A seeded, randomly initialised model (speed does not depend on the weight values)."""
    seed_all(seed)
    return PebbleForCausalLM(PebbleConfig(vocab_size=vocab_size, **shape)).eval()


def demo_base(sizes: Sizes, use_shipped: bool) -> tuple[PebbleForCausalLM, str]:
    """(the demo base, where it came from): out/full_sft_256 if shipped and wanted, else random of the demo size."""
    if use_shipped and DEMO_BASE.is_file():
        return load_model(DEMO_BASE).eval(), DEMO_BASE.name
    return random_model(sizes.demo), "random init " + "/".join(str(v) for v in sizes.demo.values())


def with_lora(base: PebbleForCausalLM, name: str = "default", rank: int = LoRATrainConfig.rank, random_b: bool = False,
              seed: int = 0, targets: str = LoRATrainConfig.targets) -> PebbleForCausalLM:
    """A copy of base with one adapter of train_lora.py's default rank and targets (every block linear).

    random_b gives B non-zero values, so the adapter changes the output as a trained one would.
    """
    model = copy.deepcopy(base)
    seed_all(seed)
    apply_lora(model, rank=rank, targets=targets, name=name, verbose=False)
    if random_b:
        with torch.no_grad():
            for path, p in model.named_parameters():
                if f".lora.{name}.B." in path:
                    p.normal_(0, 0.02)
    return model


def save_base_and_adapters(base: PebbleForCausalLM, folder: Path) -> tuple[Path, list[Path]]:
    """Write base (fp16, as train_full_sft.py does) and two random adapters "a" and "b" into folder."""
    base_path = save_model(base, folder / "base_256.safetensors", dtype=torch.float16)
    # The adapters must fit the weights load_model will rebuild (fp16-rounded), so fingerprint those.
    reloaded = load_model(base_path)
    paths = []
    for i, name in enumerate(("a", "b")):
        model = with_lora(reloaded, name=name, random_b=True, seed=i + 1)
        paths.append(save_lora(model, folder / f"{name}.safetensors", name=name))
    return base_path, paths


# ---------------------------------------------------------------- one training step

@dataclass
class Trainer:
    """A model with its AdamW over the trainable parameters and the fast paths for training, stepping as
    trainer_utils.train does."""

    model: PebbleForCausalLM
    dtype: torch.dtype
    lr: float = 5e-3
    hold_frozen: bool = True  # as train_lora.py: frozen linear weights kept in the autocast dtype

    def __post_init__(self):
        if self.hold_frozen and self.dtype != torch.float32:
            hold_frozen_linears(self.model, self.dtype)
        enable_fast_paths(self.model)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, self.lr, 0.0, "cpu")

    def step(self, batch: Batch) -> float:
        """Forward (autocast), backward, clip, AdamW step; returns the loss."""
        with autocast("cpu", self.dtype):
            loss = self.model(batch["input_ids"], labels=batch["labels"], loss_only=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def steps(self, batches: list[Batch]) -> list[float]:
        return [self.step(b) for b in batches]

    def peak_bytes(self, batch: Batch) -> dict[str, int]:
        """Peak memory of one step: what persists (weights, buffers, optimizer state) plus the step's own
        allocation peak (activations, gradients, autocast weight copies, optimizer temporaries)."""
        self.step(batch)  # so the optimizer state exists and is counted as persistent
        persistent = tensor_bytes(self.model.parameters(), self.model.buffers(), optimizer_tensors(self.optimizer))
        in_step = peak_alloc_bytes(lambda: self.step(batch))
        return {"persistent": persistent, "in_step": in_step, "peak": persistent + in_step}
