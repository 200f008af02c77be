"""One measurement per benchmark row: each takes what it needs and returns plain numbers (medians of the
interleaved repeats, in seconds, bytes or per-second rates). run.py turns them into table rows.
"""
import copy
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import (MAX_SEQ_LEN, Trainer, collate, interleave, median, real_tokens, representative_batches,
                          seed_all, spread, with_lora)
from model.chat import left_pad
from model.checkpoint import load_model
from model.common import REPO_ROOT
from model.fast_paths import enable_fast_paths
from model.lora_files import load_lora
from model.model_lora import merge_lora, set_active_lora
from model.model_pebble import PebbleForCausalLM
from trainer.runtime import resolve_dtype

BATCH_SIZE = 16  # train_lora.py's default


def _batches(data, count: int, pad_to=None) -> list[dict]:
    return [collate(data, idx, pad_to) for idx in representative_batches(data, BATCH_SIZE, count)]


def _longest(batches: list[dict]) -> dict:
    return max(batches, key=lambda b: b["input_ids"].numel())


def full_trainer(base: PebbleForCausalLM, dtype: torch.dtype) -> Trainer:
    """Full SFT: every weight of a copy of base trains (train_full_sft.py's learning rate)."""
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad = True
    return Trainer(model, dtype, lr=5e-4)


# ---------------------------------------------------------------- 1-4, 9, 10: training

def batching(base, data, dtype, count: int, repeats: int) -> dict:
    """Row 1: LoRA samples/s on length-grouped batches padded to their longest vs every sample padded to 340."""
    grouped, padded = _batches(data, count), _batches(data, count, pad_to=MAX_SEQ_LEN)
    trainer = Trainer(with_lora(base), dtype)
    times = interleave({"grouped": lambda: trainer.steps(grouped), "padded": lambda: trainer.steps(padded)}, repeats)
    samples = BATCH_SIZE * count
    return {"grouped_sps": samples / median(times["grouped"]), "padded_sps": samples / median(times["padded"]),
            "grouped_len": sum(b["input_ids"].shape[1] for b in grouped) / count, "padded_len": MAX_SEQ_LEN,
            "real_len": real_tokens(grouped) / samples}


def lora_vs_full(base, data, dtype, count: int, repeats: int, targets: tuple[str, ...] = ("all", "square")) -> dict:
    """Row 2: seconds per step and peak memory of a LoRA step for each target rule (keys named after it) and of
    a full-SFT step, all on the same batches and interleaved."""
    batches = _batches(data, count)
    trainers = {t: Trainer(with_lora(base, targets=t), dtype) for t in targets}
    trainers["full"] = full_trainer(base, dtype)
    times = interleave({name: functools.partial(t.steps, batches) for name, t in trainers.items()}, repeats)
    tokens = real_tokens(batches)
    labelled = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    out = {"target_share": labelled / tokens}
    for name, trainer in trainers.items():
        out[f"{name}_step_s"] = median(times[name]) / count
        out[f"{name}_tok_s"] = tokens / median(times[name])
        out[f"{name}_mem"] = trainer.peak_bytes(_longest(batches))
        out[f"{name}_n_lora"] = sum(p.numel() for p in trainer.params)
    return out


def dtypes(base, data, count: int, repeats: int) -> dict:
    """Row 3: LoRA training tokens/s under bf16 autocast vs plain fp32, and what resolve_dtype('auto') picks."""
    batches = _batches(data, count)
    bf16, fp32 = Trainer(with_lora(base), torch.bfloat16), Trainer(with_lora(base), torch.float32)
    times = interleave({"bf16": lambda: bf16.steps(batches), "fp32": lambda: fp32.steps(batches)}, repeats)
    tokens = real_tokens(batches)
    return {"bf16_tok_s": tokens / median(times["bf16"]), "fp32_tok_s": tokens / median(times["fp32"]),
            "auto": resolve_dtype("auto", "cpu")}


def matmul_peak(sizes: tuple[int, ...], repeats: int) -> dict:
    """Row 4: best-of-repeats GFLOP/s of square n x n matmuls in fp32 and bf16 (2 n^3 flops each)."""
    seed_all(0)
    out = {}
    for n in sizes:
        a32, b32 = torch.randn(n, n), torch.randn(n, n)
        arms = {str(dt): (lambda a=a32.to(dt), b=b32.to(dt): a @ b) for dt in (torch.float32, torch.bfloat16)}
        times = interleave(arms, repeats, warmup=2)
        for dt in (torch.float32, torch.bfloat16):
            out[(dt, n)] = 2 * n ** 3 / min(times[str(dt)]) / 1e9
    return out


def matmul_params_per_token(model: PebbleForCausalLM, target_share: float) -> float:
    """Weights one token passes through in matmuls: every block weight, plus the (tied) lm_head, which
    forward(labels=...) applies only to target tokens, so it is counted at the share of tokens that are targets."""
    blocks = sum(p.numel() for n, p in model.model.layers.named_parameters() if p.dim() == 2 and ".lora." not in n)
    return blocks + model.lm_head.weight.numel() * target_share


def bf16_base(base, data, steps: int) -> dict:
    """Row 9: peak memory of LoRA training with the frozen base held in bf16 vs fp32 (both under bf16
    autocast, adapters fp32), and the largest loss difference between the two over the first steps."""
    batches = _batches(data, steps)
    runs = {}
    for name, hold in (("bf16", True), ("fp32", False)):
        trainer = Trainer(with_lora(base, seed=0), torch.bfloat16, hold_frozen=hold)
        losses = trainer.steps(batches)
        runs[name] = {"losses": losses, "mem": trainer.peak_bytes(_longest(batches))}
    diff = max(abs(a - b) for a, b in zip(runs["bf16"]["losses"], runs["fp32"]["losses"]))
    return {"bf16_mem": runs["bf16"]["mem"], "fp32_mem": runs["fp32"]["mem"], "loss_diff": diff,
            "loss_fp32": runs["fp32"]["losses"][-1], "steps": steps}


def model_sizes(demo, large, data, dtype, count: int, repeats: int) -> dict:
    """Row 10: LoRA training tokens/s at the demo size and at MiniMind-3 size, same batches."""
    batches = _batches(data, count)
    small, big = Trainer(with_lora(demo), dtype), Trainer(with_lora(large), dtype)
    times = interleave({"demo": lambda: small.steps(batches), "large": lambda: big.steps(batches)}, repeats)
    tokens = real_tokens(batches)
    count_params = lambda m: sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())
    return {"demo_tok_s": tokens / median(times["demo"]), "large_tok_s": tokens / median(times["large"]),
            "demo_params": count_params(demo), "large_params": count_params(large)}


# ---------------------------------------------------------------- 5-8: inference

def kv_cache(model, prompt: list[int], new_tokens: int, repeats: int) -> dict:
    """Row 5: greedy generation of exactly new_tokens at batch 1, with the KV cache vs recomputing the prefix."""
    ids = torch.tensor([prompt])
    out = {}

    def gen(use_cache: bool):
        out[use_cache] = model.generate(ids, max_new_tokens=new_tokens, eos_token_id=-1, use_cache=use_cache)

    times = interleave({"cache": lambda: gen(True), "recompute": lambda: gen(False)}, repeats)
    assert out[True].shape[1] == len(prompt) + new_tokens, "generate stopped early"
    return {"cache_tok_s": new_tokens / median(times["cache"]),
            "recompute_tok_s": new_tokens / median(times["recompute"]),
            "same_tokens": bool(torch.equal(out[True], out[False]))}


def decode(model, prompts: list[list[int]], new_tokens: int, repeats: int) -> dict:
    """Row 6: generated tokens/s (all rows together, prompt prefill included) at batch 1 and at batch len(prompts)."""
    one, many = left_pad(prompts[:1], 0), left_pad(prompts, 0)

    def gen(ids, mask):
        model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, eos_token_id=-1)

    times = interleave({"b1": lambda: gen(*one), "bn": lambda: gen(*many)}, repeats)
    return {"b1_tok_s": new_tokens / median(times["b1"]),
            "bn_tok_s": len(prompts) * new_tokens / median(times["bn"]), "batch": len(prompts)}


def switching(base_path: Path, adapter_paths: list[Path], switches: int, repeats: int) -> dict:
    """Row 7: one set_active_lora between two loaded adapters vs load_model + load_lora from disk."""
    model = load_model(base_path)
    names = [load_lora(model, path) for path in adapter_paths[:2]]

    def switch():
        for i in range(switches):
            set_active_lora(model, names[i % 2])

    def from_disk():
        load_lora(load_model(base_path), adapter_paths[1])

    times = interleave({"switch": switch, "disk": from_disk}, repeats)
    return {"switch_ms": 1e3 * median(times["switch"]) / switches, "disk_ms": 1e3 * median(times["disk"])}


def merged_inference(base, batch: dict, inner: int, repeats: int) -> dict:
    """Row 8: forward latency (fp32, no grad, full logits) of the base alone, base + unmerged adapter, merged."""
    unmerged = with_lora(base, random_b=True).eval()
    merged = merge_lora(copy.deepcopy(unmerged))
    ids = batch["input_ids"]
    models = {"base": copy.deepcopy(base).eval(), "unmerged": unmerged, "merged": merged}
    for model in models.values():
        enable_fast_paths(model)  # as eval_llm and the server run

    def forward(m):
        with torch.inference_mode():
            for _ in range(inner):
                m(ids)

    times = interleave({name: (lambda m=m: forward(m)) for name, m in models.items()}, repeats)
    out = {f"{name}_ms": 1e3 * median(t) / inner for name, t in times.items()}
    out["noise"] = max(spread(t) for t in times.values())
    out["shape"] = tuple(ids.shape)
    return out



# ---------------------------------------------------------------- 11: the main job, whole

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def main_job(base: Path, avx2_only: bool, dtype: str, max_steps: int = 0) -> dict:
    """Row 11: `python trainer/train_lora.py` as a user runs it, into a temp folder holding (a link to) base:
    the whole process's wall time, and the training time and step count it prints. avx2_only runs it as a CPU
    with AVX2 and nothing newer (no AVX-512, no bf16 or AMX instructions), as most laptops are."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / base.name).symlink_to(base.resolve())
        cmd = [sys.executable, str(REPO_ROOT / "trainer" / "train_lora.py"), "--save_dir", tmp, "--dtype", dtype]
        cmd += ["--max_steps", str(max_steps)] if max_steps else []
        env = {**os.environ, "TQDM_DISABLE": "1", **(AVX2_ONLY if avx2_only else {})}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"train_lora.py failed: {proc.stderr[-2000:]}")
    done = re.search(r"after (\d+) steps, ([\d.]+) s of training", proc.stdout)
    chosen = re.search(r"dtype torch\.(\w+)", proc.stdout)
    return {"wall_s": wall, "train_s": float(done.group(2)), "steps": int(done.group(1)), "dtype": chosen.group(1)}
