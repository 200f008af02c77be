"""The training loop every stage shares, and what a stage does around it.

A stage script builds a model and a dataset, then calls `train(...)` with a function that writes its artifact
(full weights, or only an adapter). Runs under `torchrun` as DistributedDataParallel. The loop's parts live in
their own modules: trainer/config.py (flags), trainer/runtime.py (device, dtype, processes) and
trainer/schedule.py (data order, learning rate, checkpoints).
"""
import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dataset.lm_dataset import IGNORE_INDEX, PadCollator
from model.checkpoint import exclusive_run, load_model, save_model
from model.common import PebbleError, repo_path
from model.fast_paths import enable_fast_paths
from model.loading import check_tokenizer_fits, load_tokenizer, weight_path
from model.model_pebble import PebbleConfig, PebbleForCausalLM
from trainer.config import TrainConfig
from trainer.runtime import (autocast, is_main_process, keep_freed_memory, make_optimizer, pad_multiple,
                             resolve_dtype, setup_distributed)
from trainer.schedule import check_same_run, epoch_batches, load_checkpoint, lr_at, run_signature, save_checkpoint
from trainer.tracking import Tracker


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
    enable_fast_paths(model)  # those that measured faster on this device (model/fast_paths.py)
    dtype = resolve_dtype(cfg.dtype, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg.learning_rate, cfg.weight_decay, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16 and device.startswith("cuda"))
    net = DistributedDataParallel(model) if world > 1 else model
    if cfg.compile:
        net = torch.compile(net, dynamic=True)  # lengths vary from batch to batch: one graph for all of them
    batches = StepBatches(dataset, cfg, rank, world, pad_multiple(dtype))
    checkpoints = Checkpoints(Path(cfg.save_dir) / "checkpoints" / f"{run_name}.safetensors", model, optimizer,
                              run_signature(cfg, dataset, world), batches.total, save_artifact, world)
    start = checkpoints.resume() if cfg.from_resume else 0
    log = TrainLog(cfg, run_name, start, batches.total, world)
    model.train()
    for step in range(start, batches.total):
        lr = lr_at(step, batches.total, cfg.learning_rate, cfg.warmup_ratio, cfg.lr_min_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(cfg.seed * 100003 + step)  # dropout masks depend only on the step: resumable
        for micro, batch in enumerate(batches.of_step(step, device)):
            sync = micro == cfg.accumulation_steps - 1 or world == 1  # DDP averages gradients at the last one
            with (contextlib.nullcontext() if sync else net.no_sync()), autocast(device, dtype):
                # Right padding under a causal mask never reaches real tokens, so no attention mask is needed.
                if loss_fn is None:
                    loss = net(batch["input_ids"], labels=batch["labels"], loss_only=True).loss
                else:
                    loss = loss_fn(net, batch)
            if not torch.isfinite(loss):
                raise PebbleError(f"the loss became {loss.item()} at step {step}; lower --learning_rate; "
                                  f"{checkpoints.last_good()}")
            scaler.scale(loss / cfg.accumulation_steps).backward()
            log.add(loss, batch)
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        log.step(step + 1, step // batches.per_epoch, lr, grad_norm)
        if (step + 1) % cfg.save_interval == 0 and step + 1 < batches.total:
            checkpoints.save(step + 1)
    log.close()
    checkpoints.save(batches.total)
    return {"steps": batches.total, "dtype": str(dtype).replace("torch.", ""), **log.last}


class StepBatches:
    """The micro-batches of each optimizer step: epoch_batches' order for the step's epoch, collated (padded to
    the longest sample, rounded up to a multiple of pad_multiple) and moved to the device."""

    def __init__(self, dataset, cfg: TrainConfig, rank: int, world: int, pad_multiple: int = 1):
        self.dataset, self.cfg, self.rank, self.world = dataset, cfg, rank, world
        self.collate = PadCollator(pad_id=0, max_seq_len=cfg.max_seq_len, pad_multiple=pad_multiple)
        self.epoch, self.order = 0, self.epoch_order(0)  # one epoch's batches at a time
        self.per_epoch = len(self.order) // cfg.accumulation_steps
        self.total = min(self.per_epoch * cfg.epochs, cfg.max_steps or math.inf)
        if self.total == 0:
            raise PebbleError(f"{cfg.data_path} has {len(dataset)} samples: too few for one step of "
                              f"batch_size {cfg.batch_size} x accumulation_steps {cfg.accumulation_steps}")

    def epoch_order(self, epoch: int) -> list[list[int]]:
        return epoch_batches(self.dataset.lengths, self.cfg.batch_size, self.cfg.seed, epoch, self.rank, self.world)

    def of_step(self, step: int, device: str) -> Iterator[dict]:
        epoch, in_epoch = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self.epoch, self.order = epoch, self.epoch_order(epoch)
        first = in_epoch * self.cfg.accumulation_steps
        for indices in self.order[first:first + self.cfg.accumulation_steps]:
            yield {k: v.to(device) for k, v in self.collate([self.dataset[i] for i in indices]).items()}


class Checkpoints:
    """The run's checkpoint file: where a resumed run starts, and the trainable weights, optimizer state and
    progress written every save_interval steps and at the end, each time with the stage's artifact."""

    def __init__(self, path: Path, model, optimizer, signature: dict, total: int,
                 save_artifact: Callable[[torch.nn.Module], None], world: int):
        self.path, self.model, self.optimizer, self.signature = path, model, optimizer, signature
        self.total, self.save_artifact, self.world = total, save_artifact, world
        self.saved_at: Optional[int] = None  # the step whose checkpoint is on disk, if any

    def resume(self) -> int:
        """The step to start from: the checkpoint's, once it is known to be of this run (0 without one)."""
        if not self.path.is_file():
            if is_main_process():
                print(f"no checkpoint at {self.path}; starting from step 0")
            return 0
        progress = load_checkpoint(self.path, self.model, self.optimizer)
        check_same_run(self.path, progress, self.signature)
        start = min(progress["step"], self.total)
        if is_main_process():
            # A run killed after its last checkpoint may not have written its result: the loop writes it again.
            print(f"{self.path} has finished all {self.total} steps: writing its result again, no training"
                  if start == self.total else f"resumed from {self.path} at step {start}/{self.total}")
        self.saved_at = start or None
        return start

    def save(self, step: int) -> None:
        if is_main_process():
            save_checkpoint(self.path, self.model, self.optimizer, {"step": step, "total": self.total,
                                                                    **self.signature})
            self.save_artifact(self.model)
        self.saved_at = step
        if self.world > 1:
            dist.barrier()

    def last_good(self) -> str:
        """What is on disk, for an error that stops the run."""
        return (f"the checkpoint of step {self.saved_at} ({self.path}) is the last good one" if self.saved_at else
                "nothing was written")


class TrainLog:
    """What a run reports: a progress bar, and every log_interval steps (and at the last) one metrics line,
    appended to SAVE_DIR/{run_name}.log.jsonl by rank 0 and sent to the tracker with --use_wandb 1."""

    def __init__(self, cfg: TrainConfig, run_name: str, start: int, total: int, world: int):
        self.path = Path(cfg.save_dir) / f"{run_name}.log.jsonl"
        self.interval, self.total, self.world = cfg.log_interval, total, world
        if start == 0 and is_main_process() and self.path.exists():
            self.path.unlink()  # a fresh run starts a fresh log
        self.tracker = (Tracker.start(cfg.wandb_project, run_name, dataclasses.asdict(cfg), cfg.save_dir)
                        if cfg.use_wandb and is_main_process() else None)
        quiet = {} if is_main_process() else {"disable": True}  # left unset on rank 0, so TQDM_DISABLE=1 is honoured
        self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, desc=run_name, **quiet)
        self.tokens, self.t0, self.loss_sum, self.loss_n, self.last = 0, time.perf_counter(), 0.0, 0, {}

    def add(self, loss: torch.Tensor, batch: dict) -> None:
        """Count one micro-batch: its loss and its real (not padding) tokens over all processes."""
        self.tokens += int(batch["attention_mask"].sum()) * self.world
        self.loss_sum, self.loss_n = self.loss_sum + loss.item(), self.loss_n + 1

    def step(self, done: int, epoch: int, lr: float, grad_norm: torch.Tensor) -> None:
        """An optimizer step is done: advance the bar and, at an interval, write the mean loss since the last line."""
        self.bar.update(1)
        if done % self.interval and done != self.total:
            return
        elapsed = time.perf_counter() - self.t0
        self.last = {"step": done, "epoch": epoch, "loss": round(self.loss_sum / self.loss_n, 4), "lr": lr,
                     "grad_norm": round(float(grad_norm), 4), "tokens_per_s": round(self.tokens / elapsed, 1),
                     "elapsed_s": round(elapsed, 1)}
        if is_main_process():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(self.last) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if self.tracker:
            self.tracker.log(self.last, done)
        self.bar.set_postfix(loss=f"{self.last['loss']:.3f}", lr=f"{lr:.2e}", tok_s=f"{self.last['tokens_per_s']:.0f}")
        self.loss_sum, self.loss_n = 0.0, 0

    def close(self) -> None:
        self.bar.close()
        if self.tracker:
            self.tracker.finish()


# ---------------------------------------------------------------- one stage, start to end

def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts, counting tied weights once."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


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
