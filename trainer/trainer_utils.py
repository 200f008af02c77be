"""What every training stage shares: the config, the device/dtype choice, the data order, the LR schedule,
checkpoints that resume exactly, and the training loop itself.

A stage script builds a model and a dataset, then calls `train(...)` with a function that writes its
artifact (full weights, or only an adapter). Runs under `torchrun` as DistributedDataParallel.
"""
import argparse
import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dataset.lm_dataset import IGNORE_INDEX, PadCollator
from model.checkpoint import exclusive_run, load_model, load_tensors, save_model, save_tensors
from model.common import PebbleError, repo_path
from model.loading import check_tokenizer_fits, load_tokenizer, weight_path
from model.model_pebble import PebbleConfig, PebbleForCausalLM
from trainer.tracking import Tracker, installed_backend


@dataclass
class TrainConfig:
    """Options shared by the training stages; each field is also a command-line flag of the same name."""

    save_dir: str = "out"  # where weights, checkpoints and logs go
    save_weight: str = "pretrain"  # artifact name: out/{save_weight}_{hidden_size}.safetensors
    epochs: int = 1
    batch_size: int = 32  # samples per step per process
    learning_rate: float = 5e-4  # peak LR, reached after warmup, then cosine decay to lr_min_ratio * peak
    lr_min_ratio: float = 0.1
    warmup_ratio: float = 0.03  # share of all optimizer steps spent warming up
    weight_decay: float = 0.0
    device: str = "auto"  # auto: cuda if available, else cpu
    dtype: str = "auto"  # auto|bfloat16|float16|float32; auto measures whether bf16 matmuls are faster here
    accumulation_steps: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0
    log_interval: int = 10  # optimizer steps between log lines
    save_interval: int = 200  # optimizer steps between checkpoints
    hidden_size: int = 256
    num_hidden_layers: int = 8
    max_seq_len: int = 340  # longer samples are truncated (and counted)
    data_path: str = "dataset/pretrain_demo.jsonl"
    tokenizer_path: str = "model"
    from_weight: str = "none"  # start from out/{from_weight}_{hidden_size}.*, or "none" for random init
    from_resume: int = 0  # 1: continue from the last checkpoint of this run
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs); for smoke tests
    seed: int = 42
    skip_bad_lines: int = 0  # 1: leave out malformed JSONL lines (and list them) instead of stopping
    # 1: torch.compile the training forward: compiling takes a while (see the README), so it pays off on long
    # runs and GPUs, not on the short demo jobs. --use_compile is MiniMind's name for it.
    compile: int = 0
    use_compile: int = 0
    # MiniMind's experiment tracking flags: 1 also logs the metrics to wandb, swanlab or TensorBoard (the first
    # one installed; offline when there is no network). pip install -r requirements-track.txt
    use_wandb: int = 0
    wandb_project: str = "Pebble"
    # Accepted so that MiniMind command lines run; data is tokenized up front and batches are built in the main
    # process, so no loader workers are started.
    num_workers: int = 0

    def validate(self) -> None:
        """Reject values no run can use, with the flag's name."""
        for name in ("epochs", "batch_size", "accumulation_steps", "max_seq_len", "log_interval", "save_interval"):
            if getattr(self, name) <= 0:
                raise PebbleError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_steps < 0:
            raise PebbleError(f"--max_steps must be 0 (all epochs) or positive, got {self.max_steps}")
        check_range("learning_rate", self.learning_rate, low=0, low_open=True, high=1)
        check_range("lr_min_ratio", self.lr_min_ratio, low=0, high=1)
        check_range("warmup_ratio", self.warmup_ratio, low=0, high=1)
        check_range("weight_decay", self.weight_decay, low=0)
        check_range("grad_clip", self.grad_clip, low=0)
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise PebbleError(f"--dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")
        resolve_device(self.device)
        if self.use_wandb:
            installed_backend()  # a missing tracker stops the run now, not after the data and model are loaded


def check_range(flag: str, value: float, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """A numeric flag must be a finite number in [low, high] (or (low, high] with low_open)."""
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        interval = ("(" if low_open else "[") + f"{low}, " + (f"{high}]" if math.isfinite(high) else "inf)")
        raise PebbleError(f"--{flag} must be a finite number in {interval}, got {value}")


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


SWITCHES = ("from_resume", "compile", "use_compile", "use_wandb", "skip_bad_lines")  # 0/1 flags


def parse_config(cls: type, description: str, **defaults) -> "TrainConfig":
    """Map the dataclass fields of cls onto argparse flags (with per-stage defaults) and parse argv."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        default = defaults.get(f.name, f.default)
        switch = {"nargs": "?", "const": 1} if f.name in SWITCHES else {}  # MiniMind writes them bare: --use_wandb
        parser.add_argument(f"--{f.name}", type=type(f.default), default=default,
                            help=f.metadata.get("help", f"(default: {default})"), **switch)
    cfg = cls(**vars(parser.parse_args()))
    cfg.compile = cfg.compile or cfg.use_compile
    cfg.validate()
    return cfg


# ---------------------------------------------------------------- device, precision, processes

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


# ---------------------------------------------------------------- data order and schedule

def epoch_batches(lengths: list[int], batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  group: int = 64) -> list[list[int]]:
    """This process's batches for one epoch, deterministic in (seed, epoch) so a resumed run sees the same order.

    A seeded permutation is cut into windows of `group` global batches; each window is sorted by length
    before it is cut into global batches of batch * world (the incomplete last one dropped), and the batch
    order is shuffled again. Samples of similar length share a batch, so padding to the longest costs little.
    Rank takes its slice of each global batch: one process with batch B*W sees what W processes see together.
    """
    g = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(len(lengths), generator=g).tolist()
    step = batch * world
    window = step * group
    order = []
    for start in range(0, len(perm), window):
        order += sorted(perm[start:start + window], key=lambda i: lengths[i])
    starts = list(range(0, len(order) - step + 1, step))
    starts = [starts[i] for i in torch.randperm(len(starts), generator=g).tolist()]
    return [order[s + rank * batch: s + (rank + 1) * batch] for s in starts]


def lr_at(step: int, total: int, peak: float, warmup_ratio: float, min_ratio: float) -> float:
    """Linear warmup to peak, then cosine decay to min_ratio * peak at the last step."""
    warmup = max(1, int(total * warmup_ratio))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


# ---------------------------------------------------------------- checkpoints

def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes (all of them for full training, only adapters for LoRA)."""
    return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(path: Path, model, optimizer, progress: dict) -> None:
    """Write trainable weights, optimizer state and progress to one safetensors file (no pickle)."""
    tensors = {f"model.{k}": v for k, v in trainable_state(model).items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    save_tensors(tensors, path, {"format": "pebble-checkpoint", "progress": progress,
                                 "param_groups": opt["param_groups"]})


# Flags that may change between a run and its resumption: they do not change what is trained.
RESUMABLE_FLAGS = ("from_resume", "max_steps", "log_interval", "save_interval", "device", "dtype", "compile",
                   "use_compile", "probe_count", "skip_bad_lines", "use_wandb", "wandb_project", "num_workers")


def run_signature(cfg: TrainConfig, dataset, world: int) -> dict:
    """What a checkpoint must agree on to be continued: the flags that shape the run, and a hash of the data
    (the bytes of every data file the flags name, and the tokenized lengths in order)."""
    flags = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE_FLAGS}
    flags["world_size"] = world
    h = hashlib.sha256(json.dumps(list(dataset.lengths)).encode())
    for name, value in sorted(flags.items()):
        if name.endswith(("data", "data_path")) and repo_path(value).is_file():
            h.update(repo_path(value).read_bytes())
    return {"flags": flags, "data_sha256": h.hexdigest()[:16]}


def check_same_run(path: Path, progress: dict, signature: dict) -> None:
    """Refuse to resume from a checkpoint of another run (other flags or data)."""
    saved = progress.get("flags", {})
    changed = [k for k in signature["flags"] if k in saved and saved[k] != signature["flags"][k]]
    if changed:
        shown = ", ".join(f"--{k} {saved[k]} (now {signature['flags'][k]})" for k in changed[:4])
        raise PebbleError(f"{path} was written by a run with {shown}; pass the same flags to resume it, or start "
                          "without --from_resume 1")
    if progress.get("data_sha256", signature["data_sha256"]) != signature["data_sha256"]:
        raise PebbleError(f"{path} was written by a run on other data (the data files changed since); start "
                          "without --from_resume 1")


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore what save_checkpoint wrote into model and optimizer; returns the saved progress."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != "pebble-checkpoint":
        raise PebbleError(f"{path} is not a Pebble training checkpoint")
    params = dict(model.named_parameters())
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if set(weights) != set(trainable_state(model)):
        raise PebbleError(f"{path} was saved by a different run (other model or adapter layout); "
                          "start without --from_resume 1")
    with torch.no_grad():
        for k, v in weights.items():
            params[k].copy_(v)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # The file holds contiguous tensors, but a weight held column-major has column-major moments: give each
    # moment its parameter's layout again, because fused AdamW walks the two in memory order.
    for param, moments in optimizer.state.items():
        for key, value in moments.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                moments[key] = torch.empty_like(param).copy_(value)
    return meta["progress"]


# ---------------------------------------------------------------- the loop

class MetricsLog:
    """Append-only JSONL of training metrics (one object per logged step); rank 0 writes."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        if fresh and is_main_process() and path.exists():
            path.unlink()

    def write(self, record: dict) -> None:
        if is_main_process():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())


def make_optimizer(params: list, lr: float, weight_decay: float, device: str) -> torch.optim.AdamW:
    """AdamW, as one fused kernel per step where torch has one (CPU, CUDA): on the 2-core CPU its step over a
    LoRA adapter's 112 small tensors took 0.5 instead of 2.1 ms, over the whole demo base 9.4 instead of 12.6."""
    fused = device.split(":")[0] in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def train(
    model: torch.nn.Module,
    dataset,
    cfg: TrainConfig,
    save_artifact: Callable[[torch.nn.Module], None],
    run_name: str,
    rank: int = 0,
    world: int = 1,
    device: str = "cpu",
    loss_fn: Optional[Callable[[torch.nn.Module, dict], torch.Tensor]] = None,
) -> dict:
    """Train model on dataset as cfg says, checkpointing to out/checkpoints/{run_name}.safetensors.

    Returns a summary (steps, final loss, tokens/s). save_artifact(model) writes the stage's output at
    every checkpoint and at the end; only rank 0 calls it. loss_fn(net, batch on device) replaces the
    language-model loss (the mean cross-entropy of the target tokens).
    """
    torch.manual_seed(cfg.seed)
    keep_freed_memory()
    save_dir = Path(cfg.save_dir)
    ckpt_path = save_dir / "checkpoints" / f"{run_name}.safetensors"
    dtype = resolve_dtype(cfg.dtype, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg.learning_rate, cfg.weight_decay, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16 and device.startswith("cuda"))
    net = DistributedDataParallel(model) if world > 1 else model
    if cfg.compile:
        net = torch.compile(net, dynamic=True)  # lengths vary from batch to batch: one graph for all of them
    collate = PadCollator(pad_id=0, max_seq_len=cfg.max_seq_len, pad_multiple=16)

    per_epoch = len(epoch_batches(dataset.lengths, cfg.batch_size, cfg.seed, 0, rank, world)) // cfg.accumulation_steps
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    if total == 0:
        raise PebbleError(f"{cfg.data_path} has {len(dataset)} samples: too few for one step of "
                          f"batch_size {cfg.batch_size} x accumulation_steps {cfg.accumulation_steps}")
    signature = run_signature(cfg, dataset, world)
    start = 0
    if cfg.from_resume:
        if ckpt_path.is_file():
            progress = load_checkpoint(ckpt_path, model, optimizer)
            check_same_run(ckpt_path, progress, signature)
            start = min(progress["step"], total)
            if is_main_process() and start == total:
                # A run killed after its last checkpoint may not have written its result: write it again.
                print(f"{ckpt_path} has finished all {total} steps: writing its result again, no training")
            elif is_main_process():
                print(f"resumed from {ckpt_path} at step {start}/{total}")
        elif is_main_process():
            print(f"no checkpoint at {ckpt_path}; starting from step 0")
    saved_at = start or None  # the step whose checkpoint is on disk, if any
    log = MetricsLog(save_dir / f"{run_name}.log.jsonl", fresh=start == 0)
    tracker = (Tracker.start(cfg.wandb_project, run_name, dataclasses.asdict(cfg), cfg.save_dir)
               if cfg.use_wandb and is_main_process() else None)

    def checkpoint(step: int) -> None:
        nonlocal saved_at
        if is_main_process():
            save_checkpoint(ckpt_path, model, optimizer, {"step": step, "total": total, **signature})
            save_artifact(model)
        saved_at = step
        if world > 1:
            dist.barrier()

    model.train()
    quiet = {} if is_main_process() else {"disable": True}  # left unset on rank 0, so TQDM_DISABLE=1 is honoured
    bar = tqdm(total=total, initial=start, dynamic_ncols=True, desc=run_name, **quiet)
    tokens, t0, loss_sum, loss_n, last = 0, time.perf_counter(), 0.0, 0, {}
    batches_epoch, batches = -1, []
    for step in range(start, total):
        epoch, in_epoch = divmod(step, per_epoch)
        if epoch != batches_epoch:
            batches_epoch, batches = epoch, epoch_batches(dataset.lengths, cfg.batch_size, cfg.seed, epoch, rank, world)
        lr = lr_at(step, total, cfg.learning_rate, cfg.warmup_ratio, cfg.lr_min_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(cfg.seed * 100003 + step)  # dropout masks depend only on the step: resumable
        for micro in range(cfg.accumulation_steps):
            batch = collate([dataset[i] for i in batches[in_epoch * cfg.accumulation_steps + micro]])
            batch = {k: v.to(device) for k, v in batch.items()}
            sync = micro == cfg.accumulation_steps - 1 or world == 1
            with (contextlib.nullcontext() if sync else net.no_sync()), autocast(device, dtype):
                # Right padding under a causal mask never reaches real tokens, so no attention mask is needed.
                if loss_fn is None:
                    loss = net(batch["input_ids"], labels=batch["labels"], loss_only=True).loss
                else:
                    loss = loss_fn(net, batch)
            if not torch.isfinite(loss):
                kept = (f"the checkpoint of step {saved_at} ({ckpt_path}) is the last good one" if saved_at else
                        "nothing was written")
                raise PebbleError(f"the loss became {loss.item()} at step {step}; lower --learning_rate; {kept}")
            scaler.scale(loss / cfg.accumulation_steps).backward()
            tokens += int(batch["attention_mask"].sum()) * world
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        done = step + 1
        if done % cfg.log_interval == 0 or done == total:
            elapsed = time.perf_counter() - t0
            last = {"step": done, "epoch": epoch, "loss": round(loss_sum / loss_n, 4), "lr": lr,
                    "grad_norm": round(float(grad_norm), 4), "tokens_per_s": round(tokens / elapsed, 1),
                    "elapsed_s": round(elapsed, 1)}
            log.write(last)
            if tracker:
                tracker.log(last, done)
            bar.set_postfix(loss=f"{last['loss']:.3f}", lr=f"{lr:.2e}", tok_s=f"{last['tokens_per_s']:.0f}")
            loss_sum, loss_n = 0.0, 0
        if done % cfg.save_interval == 0 and done < total:
            checkpoint(done)
    bar.close()
    checkpoint(total)
    if tracker:
        tracker.finish()
    return {"steps": total, "dtype": str(dtype).replace("torch.", ""), **last}


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts, counting tied weights once."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)



# ---------------------------------------------------------------- one stage, start to end

def load_data(cfg: TrainConfig, dataset_cls: type, tokenizer):
    """The training data, tokenized; prints how many samples, how many were truncated or skipped and why."""
    data = dataset_cls(repo_path(cfg.data_path), tokenizer, cfg.max_seq_len, skip_bad_lines=bool(cfg.skip_bad_lines))
    # A target at position t is predicted from the tokens before it, so position 0 never counts.
    empty = sum(bool((labels[1:cfg.max_seq_len] == IGNORE_INDEX).all()) for labels in data.labels)
    if empty == len(data):
        raise PebbleError(f"with --max_seq_len {cfg.max_seq_len} no sample of {cfg.data_path} keeps a target token "
                          f"to learn from (the longest has {max(map(len, data.input_ids))} tokens); raise "
                          "--max_seq_len")
    if is_main_process():
        print(f"{len(data)} samples from {cfg.data_path}; {data.num_truncated} truncated to {cfg.max_seq_len} tokens"
              + (f", {empty} of them to no target token (they teach nothing)" if empty else ""))
        if data.skipped:
            shown = "; ".join(data.skipped[:10]) + (" ..." if len(data.skipped) > 10 else "")
            print(f"skipped {len(data.skipped)} bad line(s): {shown}")
    return data


def init_model(cfg: TrainConfig, tokenizer) -> PebbleForCausalLM:
    """The model to train: out/{from_weight}_{hidden}.* if given, else a fresh one sized by the flags."""
    if cfg.from_weight != "none":
        model = load_model(weight_path(cfg.save_dir, cfg.from_weight, cfg.hidden_size))
    else:
        model = PebbleForCausalLM(PebbleConfig(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                                               vocab_size=len(tokenizer)))
    check_tokenizer_fits(tokenizer, model, cfg.from_weight)
    return model


def run_stage(cfg: TrainConfig, dataset_cls: type) -> None:
    """Pretraining or full SFT: every weight trains; writes out/{save_weight}_{hidden}.safetensors."""
    # 1. processes, device, tokenizer, data
    rank, world, device = setup_distributed(cfg.device)
    cfg.save_dir = str(repo_path(cfg.save_dir))
    tokenizer = load_tokenizer(cfg.tokenizer_path)
    data = load_data(cfg, dataset_cls, tokenizer)
    # 2. model (seeded, so that every process and every rerun starts from the same weights)
    torch.manual_seed(cfg.seed)
    model = init_model(cfg, tokenizer).to(device)
    total, _ = count_parameters(model)
    out_path = Path(cfg.save_dir) / f"{cfg.save_weight}_{model.config.hidden_size}.safetensors"
    if is_main_process():
        print(f"model: {total / 1e6:.2f}M parameters, hidden {model.config.hidden_size}, "
              f"{model.config.num_hidden_layers} layers; dtype {resolve_dtype(cfg.dtype, device)}; {world} process(es)")
    # 3. train, saving the artifact at every checkpoint
    save = functools.partial(_save_full, path=out_path, data_path=cfg.data_path)
    with exclusive_run(out_path) if is_main_process() else contextlib.nullcontext():
        summary = train(model, data, cfg, save, f"{cfg.save_weight}_{model.config.hidden_size}", rank, world, device)
    if is_main_process():
        print(f"wrote {out_path} after {summary['steps']} steps (last loss {summary.get('loss')})")
    if world > 1:
        dist.destroy_process_group()


def _save_full(model: PebbleForCausalLM, path: Path, data_path: str) -> None:
    save_model(model, path, dtype=torch.float16, data=os.path.basename(data_path))


def base_model_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags that pick a trained base: --save_dir --weight --hidden_size
    --tokenizer_path (for the measuring scripts)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save_dir", default="out")
    parser.add_argument("--weight", default="full_sft", help="out/{weight}_{hidden_size}.safetensors or .pth")
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--tokenizer_path", default="model")
    return parser
