"""Stage 3: train a LoRA adapter on a frozen chat base and write only the adapter.

    python trainer/train_lora.py                         # identity adapter (Nova) on out/full_sft_{hidden}
    python trainer/train_lora.py --lora_name lora_medical --data_path dataset/lora_medical.jsonl
    torchrun --nproc_per_node 2 trainer/train_lora.py    # data-parallel

Writes out/lora/{lora_name}_{hidden}.safetensors (1.3 MB on the demo base; 261 KB with --targets square).
Resume checkpoints hold the adapter and optimizer state only, never the base.
"""
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dataset.lm_dataset import ConcatDatasets, SFTDataset
from model.chat import generate_replies
from model.checkpoint import exclusive_run, fingerprint, load_model
from model.common import PebbleError, repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import check_tokenizer_fits, load_tokenizer, weight_path
from model.lora_files import load_lora, save_lora
from model.model_lora import apply_lora, lora_disabled, mark_only_lora_trainable, merge_lora
from trainer.config import LoRATrainConfig, parse_config
from trainer.evaluation import first_user_turns
from trainer.runtime import autocast, hold_frozen_linears, is_main_process, resolve_dtype, setup_distributed
from trainer.trainer_utils import load_data, train


def parse_blocks(spec: str, num_blocks: int) -> Optional[list[int]]:
    """--lora_blocks: "all" -> None (every block), "4-7" -> [4, 5, 6, 7], "6" -> [6]."""
    if spec == "all":
        return None
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", spec.strip())
    blocks = list(range(int(match[1]), int(match[2] or match[1]) + 1)) if match else []  # "5-3": none
    if not blocks or blocks[-1] >= num_blocks:
        raise PebbleError(f"--lora_blocks must be all or a range FIRST-LAST within 0-{num_blocks - 1}, got {spec!r}")
    return blocks


def reply_positions(keep: torch.Tensor) -> torch.Tensor:
    """(B, T) bool, True where a position predicts a reply token -> (B, T): each such position's index within its
    own reply (0 for a reply's first token; a conversation's second reply counts from 0 again)."""
    count = keep.long().cumsum(1)
    first = keep & ~F.pad(keep[:, :-1], (1, 0), value=False)
    return count - torch.where(first, count, 0).cummax(1).values


def replay_distillation_loss(model: torch.nn.Module, weight: float = 1.0, lead_tokens: int = 0,
                             lead_weight: float = 1.0) -> Callable[[torch.nn.Module, dict], torch.Tensor]:
    """A loss for task rows plus replayed rows (batch["source"] 0 and 1): cross-entropy on the task replies,
    and on the replayed replies `weight` times the KL divergence from the base's next-token distribution (the
    adapter switched off) to the adapted model's, summed over both kinds of target tokens and divided by their
    count. The first `lead_tokens` tokens of each replayed reply count `lead_weight` times: they decide what the
    reply is about (whether the model answers as the adapter's persona), and the rest mostly follow them."""

    def loss_fn(net: torch.nn.Module, batch: dict) -> torch.Tensor:
        ids, labels, replay = batch["input_ids"], batch["labels"], batch["source"] == 1  # (B, T), (B, T), (B,)
        # Only positions that predict a reply token reach lm_head: in chat data most tokens are prompt.
        keep = F.pad(labels[:, 1:] != -100, (0, 1), value=False)  # (B, T)
        targets = labels[:, 1:][keep[:, :-1]]  # (N,)
        from_replay = replay[:, None].expand_as(keep)[keep]  # (N,)
        logits = net(ids, logits_at=keep).logits.float()  # (N, V); through net so that DDP sees the forward
        loss = F.cross_entropy(logits[~from_replay], targets[~from_replay], reduction="sum")
        if bool(replay.any()):
            with torch.no_grad(), lora_disabled(model):
                base = model(ids[replay], logits_at=keep[replay]).logits.float()  # (M, V), order of logits[from_replay]
            kl = F.kl_div(F.log_softmax(logits[from_replay], -1), F.log_softmax(base, -1), log_target=True,
                          reduction="none").sum(-1)  # (M,)
            lead = reply_positions(keep)[keep][from_replay] < lead_tokens  # (M,)
            loss = loss + weight * (kl * torch.where(lead, lead_weight, 1.0)).sum()
        return loss / max(len(targets), 1)

    return loss_fn


def probe_prompts(data_path: Path, count: int, max_chars: int = 200) -> list[str]:
    """Short user prompts to show the adapter's effect: first user turns from {data}_eval.jsonl if it exists,
    else from the data (lines that are not usable conversations are passed over); alternating Chinese and
    English where both are present."""
    source = data_path.with_name(data_path.stem + "_eval.jsonl")
    turns = first_user_turns(source if source.is_file() else data_path, limit=200)
    prompts = [t[-1]["content"] for t in turns if 0 < len(t[-1]["content"]) <= max_chars]
    zh = [p for p in prompts if any("\u4e00" <= c <= "\u9fff" for c in p)]
    en = [p for p in prompts if p not in zh]
    mixed = [p for pair in zip(zh, en) for p in pair] or prompts
    return mixed[:count]


def show_probes(model, tokenizer, prompts: list[str], title: str) -> None:
    """Print the greedy reply to each probe prompt."""
    if not prompts or not is_main_process():
        return
    model.eval()
    replies = generate_replies(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts],
                               max_new_tokens=64)
    print(f"--- {title}")
    for p, r in zip(prompts, replies):
        print(f"  Q: {p}\n  A: {r}")


def main() -> None:
    cfg = parse_config(LoRATrainConfig, __doc__, data_path="dataset/lora_identity.jsonl", from_weight="full_sft",
                       learning_rate=8e-3, epochs=2, batch_size=16, save_interval=100, log_interval=5)
    # 1. processes, device, tokenizer, data
    rank, world, device = setup_distributed(cfg.device)
    cfg.save_dir = str(repo_path(cfg.save_dir))
    tokenizer = load_tokenizer(cfg.tokenizer_path)
    data_path = repo_path(cfg.data_path)
    data = load_data(cfg, SFTDataset, tokenizer)
    replayed = cfg.replay_data != "none" and cfg.replay_ratio > 0
    if replayed:
        # Each pass over the task data meets general chat it has not seen before: the task data once per epoch
        # plus epochs x replay_ratio x its size replayed conversations, trained as one shuffled pass (the same
        # number of steps as epochs over task + replay). The more different replayed replies, the better the
        # adapter keeps the base's general behaviour on chat it has never seen.
        count = round(cfg.replay_ratio * len(data)) * cfg.epochs
        replay = SFTDataset(repo_path(cfg.replay_data), tokenizer, cfg.max_seq_len, sample=(count, cfg.seed),
                            exclude=cfg.replay_exclude)
        data = ConcatDatasets([data] * cfg.epochs + [replay], sources=[0] * cfg.epochs + [1])
        if is_main_process():
            print(f"+ {len(replay)} replayed conversations from {cfg.replay_data} (--replay_ratio {cfg.replay_ratio}"
                  f" per epoch, new ones each epoch; --replay_loss {cfg.replay_loss}); {cfg.epochs} epochs of task "
                  f"data and the replay are trained as one shuffled pass of {len(data)} samples")
        cfg.epochs = 1
    # 2. the frozen base, with a preset adapter folded in if asked
    base_path = weight_path(cfg.save_dir, cfg.from_weight, cfg.hidden_size)
    model = load_model(base_path)
    check_tokenizer_fits(tokenizer, model, str(base_path))
    hidden = model.config.hidden_size
    lora_dir = Path(cfg.save_dir) / "lora"
    if cfg.preset_lora != "none":
        load_lora(model, weight_path(lora_dir, cfg.preset_lora, hidden))
        merge_lora(model, permanent=True)
    base_fingerprint = fingerprint(model)
    # 3. the adapter: fresh (seeded, so a rerun starts from the same A), or continued from a file
    torch.manual_seed(cfg.seed)
    if cfg.lora_checkpoint != "none":
        load_lora(model, repo_path(cfg.lora_checkpoint), name=cfg.lora_name)
        mark_only_lora_trainable(model, cfg.lora_name)
    else:
        apply_lora(model, rank=cfg.rank, alpha=cfg.alpha or None, dropout=cfg.lora_dropout, targets=cfg.targets,
                   name=cfg.lora_name, verbose=is_main_process(),
                   blocks=parse_blocks(cfg.lora_blocks, model.config.num_hidden_layers))
    model.to(device)
    dtype = resolve_dtype(cfg.dtype, device)
    if dtype != torch.float32:
        hold_frozen_linears(model, dtype)
    enable_fast_paths(model)
    if is_main_process():
        print(f"base {cfg.from_weight} hidden {hidden}; dtype {dtype}; {world} process(es)")
    probes = probe_prompts(data_path, cfg.probe_count)
    with lora_disabled(model), autocast(device, dtype):
        show_probes(model, tokenizer, probes, "base, before training")
    # 4. train, writing the adapter at every checkpoint
    out_path = lora_dir / f"{cfg.lora_name}_{hidden}.safetensors"
    extra = {"data": data_path.name, "base_weight": cfg.from_weight, "preset_lora": cfg.preset_lora,
             "replay": f"{cfg.replay_data} x {cfg.replay_ratio} ({cfg.replay_loss})"}

    def save(m) -> None:
        save_lora(m, out_path, name=cfg.lora_name, base_fingerprint=base_fingerprint, **extra)

    distill = replayed and cfg.replay_loss == "kl"
    loss_fn = (replay_distillation_loss(model, cfg.replay_weight, cfg.replay_lead_tokens, cfg.replay_lead_weight)
               if distill else None)
    with exclusive_run(out_path) if is_main_process() else contextlib.nullcontext():
        summary = train(model, data, cfg, save, f"{cfg.lora_name}_{hidden}", rank, world, device, loss_fn=loss_fn)
    # 5. the effect
    with autocast(device, dtype):
        show_probes(model, tokenizer, probes, f"with {cfg.lora_name}, after training")
    if is_main_process():
        size = out_path.stat().st_size / 1024
        print(f"wrote {out_path} ({size:.0f} KB) after {summary['steps']} steps, {summary.get('elapsed_s')} s of "
              f"training (last loss {summary.get('loss')})")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    run_cli(main)
