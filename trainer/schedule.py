"""Where a run stands at each step: the order of the data, the learning rate, and the checkpoints that let a run
stop and continue exactly where it was (trainable weights, optimizer state, progress, and what the run was)."""
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import torch

from model.checkpoint import load_tensors, save_tensors
from model.common import PebbleError, repo_path

# Flags that may change between a run and its resumption: they do not change what is trained.
RESUMABLE_FLAGS = ("from_resume", "max_steps", "log_interval", "save_interval", "device", "dtype", "compile",
                   "use_compile", "probe_count", "skip_bad_lines", "use_wandb", "wandb_project", "num_workers")


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
    # The file holds contiguous tensors, but a weight need not be (model/fast_decode.py holds weights column-major),
    # and fused AdamW walks a weight and its moments in memory order: give each moment its weight's layout again.
    for param, moments in optimizer.state.items():
        for key, value in moments.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                moments[key] = torch.empty_like(param).copy_(value)
    return meta["progress"]


def run_signature(cfg, dataset, world: int) -> dict:
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
