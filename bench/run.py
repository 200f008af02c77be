"""Pebble's speed and memory benchmark: LoRA training, generation and adapter switching on this machine.

    python bench/run.py                          # all rows (about 10 minutes on 2 idle cores); writes bench/RESULTS.md
    python bench/run.py --quick                  # smoke run with tiny models (< 2 minutes); prints the table only
    python bench/run.py --only kv_cache,switch   # a subset, by name or number; prints only unless --out is given

Every figure is the median of several repeats, and the two (or three) sides of a comparison are measured in
the same run, interleaved (A B, B A, ...), after a warm-up round that is not counted. See bench/README.md.
"""
import argparse
import copy
import datetime
import functools
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from bench import rows
from bench.common import (DEMO_BASE, FULL_SIZES, QUICK_SIZES, Sizes, collate, demo_base,
                          encode_prompts, load_data, machine_line, OtherLoad, random_model, representative_batches,
                          save_base_and_adapters, seed_all)
from model.checkpoint import load_model
from model.common import REPO_ROOT, PebbleError, run_cli
from model.fast_paths import enable_fast_paths
from model.lora_files import load_lora
from trainer.runtime import keep_freed_memory, resolve_dtype

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
LORA_DIR = REPO_ROOT / "out" / "lora"
MiB = 2 ** 20
BUSY_LIMIT = 0.05  # share of the CPU other processes may use during the run before the report carries a warning
NOTE_LOAD = 0.02  # ... during one row before that row is flagged


@dataclass
class Plan:
    """How much work each row does in one mode."""

    sizes: Sizes
    use_shipped: bool  # load out/full_sft_256 when it exists (the full run) instead of a random model
    train_batches: int  # length-quantile batches per timed training repeat
    train_repeats: int
    gen_tokens: int
    gen_repeats: int  # row 5 (recomputing the prefix is the slowest arm of the benchmark)
    decode_repeats: int  # row 6
    switches: int  # set_active_lora calls per row-7 repeat
    small_repeats: int  # rows 7 and 8, whose single calls are short
    forward_inner: int  # row-8 forwards per repeat
    matmul_sizes: tuple[int, ...]
    matmul_repeats: int
    bf16_steps: int  # row 9


# About 8 minutes on an idle 2-core CPU before row 11 runs the main job twice: odd repeat counts, so a median is one measured run.
FULL = Plan(FULL_SIZES, True, train_batches=6, train_repeats=7, gen_tokens=256, gen_repeats=5, decode_repeats=5,
            switches=200, small_repeats=9, forward_inner=10, matmul_sizes=(1024, 2048), matmul_repeats=5, bf16_steps=4)
QUICK = Plan(QUICK_SIZES, False, train_batches=2, train_repeats=2, gen_tokens=256, gen_repeats=2, decode_repeats=2,
             switches=50, small_repeats=2, forward_inner=2, matmul_sizes=(512, 1024), matmul_repeats=2, bf16_steps=2)


@dataclass
class Row:
    """One line of the results table."""

    num: str
    what: str
    figures: str
    result: str
    target: str
    verdict: str
    runs: str


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def memory(m: dict) -> str:
    """A Trainer.peak_bytes result as 'peak MiB (held + in step)'."""
    return f"{m['peak'] / MiB:.0f} MiB ({m['persistent'] / MiB:.0f} held + {m['in_step'] / MiB:.0f} in step)"


class Bench:
    """What the rows share, built on first use: data, demo base, autocast dtype, and row 2's measurements
    (which row 4 reuses for its MFU figures)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        seed_all(0)
        self.tokenizer, self.data = load_data()
        self.dtype = resolve_dtype("auto", "cpu")
        self.base, self.base_name = demo_base(plan.sizes, plan.use_shipped)

    @property
    def train_runs(self) -> str:
        return f"median of {self.plan.train_repeats} (each {self.plan.train_batches} steps)"

    @functools.cached_property
    def decoder(self) -> torch.nn.Module:
        """A copy of the base with the fast paths that eval_llm and the server decode with."""
        model = copy.deepcopy(self.base).eval()
        enable_fast_paths(model)
        return model

    @functools.cached_property
    def lora_vs_full(self) -> dict:
        p = self.plan
        return rows.lora_vs_full(self.base, self.data, self.dtype, p.train_batches, p.train_repeats)


# ---------------------------------------------------------------- rows: measurement -> table lines

def row_batching(b: Bench) -> list[Row]:
    r = rows.batching(b.base, b.data, b.dtype, b.plan.train_batches, b.plan.train_repeats)
    ratio = r["grouped_sps"] / r["padded_sps"]
    return [Row("1", "LoRA training samples/s: length-grouped batches padded to their longest vs every sample "
                     f"padded to {r['padded_len']} (MiniMind)",
                f"grouped {r['grouped_sps']:.1f}/s (mean width {r['grouped_len']:.0f}, real {r['real_len']:.0f} "
                f"tokens/sample); padded {r['padded_sps']:.1f}/s", f"{ratio:.2f}x", ">= 4x", verdict(ratio >= 4),
                b.train_runs)]


def row_lora_vs_full(b: Bench) -> list[Row]:
    p = b.plan
    large = rows.lora_vs_full(random_model(p.sizes.large), b.data, b.dtype, p.train_batches, p.train_repeats, ("all",))
    hidden = p.sizes.large["hidden_size"]
    out = []
    for num, r, arm, which in (("2", b.lora_vs_full, "all", "train_lora.py's targets: every block linear"),
                               ("2b", b.lora_vs_full, "square", "square layers only: q_proj, o_proj, MiniMind's rule"),
                               ("2c", large, "all", f"every block linear, MiniMind-3 size: hidden {hidden}, "
                                                    "random init")):
        speedup = r["full_step_s"] / r[f"{arm}_step_s"]
        lora_mb, full_mb = r[f"{arm}_mem"]["peak"] / MiB, r["full_mem"]["peak"] / MiB
        out.append(Row(num, f"LoRA step ({which}) vs full-SFT step, same model and batches: time per step, "
                            "peak memory",
                       f"LoRA {1e3 * r[f'{arm}_step_s']:.0f} ms, {memory(r[f'{arm}_mem'])}; "
                       f"full {1e3 * r['full_step_s']:.0f} ms, {memory(r['full_mem'])}",
                       f"LoRA {speedup:.2f}x faster, peak {lora_mb / full_mb:.2f}x of full",
                       # At the demo size with every block linear adapted the per-adapter overhead is a large share
                       # of a step (bench/README.md), so that arm is reported; the target holds for the others.
                       "reported" if num == "2" else "LoRA >= 1.3x faster, lower peak",
                       "reported" if num == "2" else verdict(speedup >= 1.3 and lora_mb < full_mb),
                       b.train_runs + "; memory: one profiled step"))
    return out


def row_dtype(b: Bench) -> list[Row]:
    r = rows.dtypes(b.base, b.data, b.plan.train_batches, b.plan.train_repeats)
    faster = torch.bfloat16 if r["bf16_tok_s"] > r["fp32_tok_s"] else torch.float32
    auto = str(r["auto"]).replace("torch.", "")
    return [Row("3", "LoRA training tokens/s: bf16 autocast vs fp32",
                f"bf16 {r['bf16_tok_s']:.0f} tok/s; fp32 {r['fp32_tok_s']:.0f} tok/s",
                f"bf16 = {r['bf16_tok_s'] / r['fp32_tok_s']:.2f}x fp32; auto picks {auto}, "
                f"{'the faster' if r['auto'] == faster else 'NOT the faster'}", "reported", "reported", b.train_runs)]


def row_mfu(b: Bench) -> list[Row]:
    p = b.plan
    peaks = rows.matmul_peak(p.matmul_sizes, p.matmul_repeats)
    best = {dt: max(v for (d, _), v in peaks.items() if d == dt) for dt in (torch.float32, torch.bfloat16)}
    shown = "; ".join(f"{str(dt).replace('torch.', '')} {n}: {v:.0f}" for (dt, n), v in peaks.items())
    r = b.lora_vs_full
    n_base = rows.matmul_params_per_token(b.base, r["target_share"])
    flops = {"full SFT": 6 * n_base * r["full_tok_s"], "LoRA": (4 * n_base + 6 * r["all_n_lora"]) * r["all_tok_s"]}
    share = "; ".join(f"{name} {f / 1e9:.1f} GFLOP/s = {100 * f / 1e9 / best[torch.float32]:.1f}% of fp32 peak, "
                      f"{100 * f / 1e9 / best[torch.bfloat16]:.1f}% of bf16 peak" for name, f in flops.items())
    return [Row("4a", "matmul peak (n x n, 2n^3 flops), GFLOP/s", shown,
                f"peak fp32 {best[torch.float32]:.0f}, bf16 {best[torch.bfloat16]:.0f}", "reported", "reported",
                f"best of {p.matmul_repeats}"),
            Row("4b", f"MFU of training ({str(b.dtype).replace('torch.', '')} autocast; row 2's tokens/s)", share,
                f"N = {n_base / 1e6:.2f}M matmul params/token, N_lora = {r['all_n_lora'] / 1e3:.1f}k", "reported",
                "reported", b.train_runs)]


def row_kv_cache(b: Bench) -> list[Row]:
    p = b.plan
    prompt = encode_prompts(b.tokenizer, 1)[0]
    r = rows.kv_cache(b.decoder, prompt, p.gen_tokens, p.gen_repeats)
    ratio = r["cache_tok_s"] / r["recompute_tok_s"]
    return [Row("5", f"generation, {p.gen_tokens} new tokens after a {len(prompt)}-token prompt, batch 1: KV cache "
                     "vs recomputing the prefix", f"cache {r['cache_tok_s']:.0f} tok/s; recompute "
                     f"{r['recompute_tok_s']:.0f} tok/s; same tokens: {'yes' if r['same_tokens'] else 'NO'}",
                f"{ratio:.1f}x", ">= 5x", verdict(ratio >= 5), f"median of {p.gen_repeats}")]


def row_decode(b: Bench) -> list[Row]:
    p = b.plan
    r = rows.decode(b.decoder, encode_prompts(b.tokenizer, 8), p.gen_tokens, p.decode_repeats)
    return [Row("6", f"decode with the KV cache, {p.gen_tokens} new tokens: batch 1 vs batch {r['batch']}",
                f"batch 1 {r['b1_tok_s']:.0f} tok/s; batch {r['batch']} {r['bn_tok_s']:.0f} tok/s (all rows)",
                f"{r['bn_tok_s'] / r['b1_tok_s']:.1f}x", "reported", "reported", f"median of {p.decode_repeats}")]


def shipped_files(b: Bench) -> Optional[tuple[Path, list[Path]]]:
    """The shipped base and two of its adapters from out/lora/, if they exist and fit together; else None."""
    adapters = sorted(LORA_DIR.glob(f"*_{b.base.config.hidden_size}.safetensors"))
    if not b.plan.use_shipped or not DEMO_BASE.is_file() or len(adapters) < 2:
        return None
    try:
        model = load_model(DEMO_BASE)
        for path in adapters[:2]:
            load_lora(model, path)
    except PebbleError as e:
        print(f"not using the adapters in {LORA_DIR}: {e}")
        return None
    return DEMO_BASE, adapters[:2]


def row_switch(b: Bench) -> list[Row]:
    p = b.plan
    with tempfile.TemporaryDirectory() as tmp:
        files = shipped_files(b)
        source = "out/ and out/lora/" if files else "random adapters in a temp dir"
        files = files or save_base_and_adapters(b.base, Path(tmp))
        r = rows.switching(*files, p.switches, p.small_repeats)
    return [Row("7", "switch adapter: set_active_lora between two loaded adapters vs load_model + load_lora from disk "
                     f"({source})", f"switch {r['switch_ms']:.3f} ms; from disk {r['disk_ms']:.0f} ms",
                f"{r['disk_ms'] / r['switch_ms']:.0f}x", "switch <= 5 ms", verdict(r["switch_ms"] <= 5),
                f"median of {p.small_repeats} (switch: mean of {p.switches} per repeat)")]


def row_merge(b: Bench) -> list[Row]:
    p = b.plan
    batch = collate(b.data, representative_batches(b.data, rows.BATCH_SIZE, 1)[0])
    r = rows.merged_inference(b.base, batch, p.forward_inner, p.small_repeats)
    over = r["unmerged_ms"] / r["base_ms"] - 1
    merged = r["merged_ms"] / r["base_ms"] - 1
    tolerance = max(r["noise"], 0.02)
    return [Row("8", f"inference forward on a {r['shape'][0]}x{r['shape'][1]} batch (fp32): base vs unmerged "
                     "adapter vs merged", f"base {r['base_ms']:.1f} ms; unmerged {r['unmerged_ms']:.1f} ms; "
                     f"merged {r['merged_ms']:.1f} ms", f"unmerged {100 * over:+.1f}%, merged {100 * merged:+.1f}% "
                     f"(noise {100 * tolerance:.0f}%)", "unmerged <= +15%; merged == base within noise",
                verdict(over <= 0.15 and abs(merged) <= tolerance),
                f"median of {p.small_repeats} (each {p.forward_inner} forwards)")]


def row_bf16_base(b: Bench) -> list[Row]:
    r = rows.bf16_base(b.base, b.data, b.plan.bf16_steps)
    lower = "bf16 base" if r["bf16_mem"]["peak"] < r["fp32_mem"]["peak"] else "fp32 base"
    return [Row("9", "LoRA training under bf16 autocast, frozen linear weights held in bf16 (the default) vs fp32: "
                     "peak memory, loss",
                f"bf16 base {memory(r['bf16_mem'])}; fp32 base {memory(r['fp32_mem'])}",
                f"{lower} is lower ({r['bf16_mem']['peak'] / r['fp32_mem']['peak']:.2f}x); max |loss diff| over "
                f"{r['steps']} steps {r['loss_diff']:.2e} (loss {r['loss_fp32']:.3f})", "reported", "reported",
                "one profiled step each")]


def row_sizes(b: Bench) -> list[Row]:
    p = b.plan
    large = random_model(p.sizes.large)
    r = rows.model_sizes(b.base, large, b.data, b.dtype, p.train_batches, p.train_repeats)
    shape = lambda s: f"hidden {s['hidden_size']}, {s['num_hidden_layers']} layers"
    return [Row("10", "LoRA training tokens/s: demo size vs MiniMind-3 size (random init)",
                f"demo ({shape(p.sizes.demo)}, {r['demo_params'] / 1e6:.1f}M) {r['demo_tok_s']:.0f} tok/s; "
                f"MiniMind-3 ({shape(p.sizes.large)}, {r['large_params'] / 1e6:.1f}M) {r['large_tok_s']:.0f} tok/s",
                f"{r['demo_tok_s'] / r['large_tok_s']:.1f}x", "reported", "reported", b.train_runs)]


def row_main_job(b: Bench) -> list[Row]:
    if not DEMO_BASE.is_file():
        return []
    steps = 0 if b.plan.use_shipped else 10  # --quick: a few steps, to check that the row runs
    out = []
    for num, avx2, dtype, target in (("11a", True, "float32", 90), ("11b", False, "auto", None)):
        target = None if steps else target  # the target is for the whole job
        r = rows.main_job(DEMO_BASE, avx2, dtype, steps)
        cpu = "as an AVX2-only CPU (AVX-512/AMX off), --dtype float32" if avx2 else "this CPU, --dtype auto"
        ok = target is None or r["train_s"] <= target
        out.append(Row(num, f"the main job, `python trainer/train_lora.py`, {cpu}: training time, whole process",
                       f"{r['steps']} steps in {r['train_s']:.1f} s of training ({r['dtype']}); whole process "
                       f"{r['wall_s']:.1f} s", f"{r['train_s']:.1f} s", f"<= {target} s" if target else "reported",
                       verdict(ok) if target else "reported", "one run"))
    return out


ROWS: dict[str, Callable[[Bench], list[Row]]] = {
    "batching": row_batching, "lora_vs_full": row_lora_vs_full, "dtype": row_dtype, "mfu": row_mfu,
    "kv_cache": row_kv_cache, "decode": row_decode, "switch": row_switch, "merge": row_merge,
    "bf16_base": row_bf16_base, "sizes": row_sizes, "main_job": row_main_job,
}

NOTES = """\
Method notes:
- Timing: each comparison's arms run interleaved (A B, B A, ...) in one process after one warm-up round that is
  not counted; a figure is the median over the repeats given in "runs". torch keeps its default thread count.
- Training rows use the identity LoRA data (dataset/lora_identity.jsonl), batch 16, rank-8 adapters on every linear
  layer of the blocks (train_lora.py's default; row 2b: the square layers; row 2c: a random model of MiniMind-3's
  size), fused AdamW, gradient clipping and glibc keeping freed memory, as trainer_utils.train does. Each repeat
  steps through the same few length-grouped batches of epoch 0 taken at evenly spaced quantiles of their width,
  so they stand for a whole epoch; batches are collated before timing. Tokens/s counts real (non-pad) tokens.
- Peak memory: torch has no CPU allocator statistics, so it is bytes held before the step (weights, buffers,
  optimizer state) plus the peak of the allocations made during one step, replayed from torch.profiler
  (profile_memory=True). Memory that oneDNN or glibc keep outside torch's allocator is not included.
- MFU: training FLOP/s = tokens/s x 6N (full SFT) or x (4N + 6 N_lora) (LoRA: no weight gradients for the frozen
  base), N = the block weights plus the tied lm_head weighted by the share of tokens that are targets (forward
  with labels applies lm_head to target positions only); attention score FLOPs are left out. Peak = best n x n
  matmul of row 4a for that dtype.
- Generation is greedy in fp32 with eos_token_id=-1, so every run makes exactly the stated number of tokens.
- Row 8 "within noise": |merged/base - 1| <= max(2%, interquartile range / median of the repeats of any arm).
- Other processes: the share of the CPU they used is measured from /proc/stat during the run and each row;
  a row they disturbed by more than 2% says so in "runs".
"""


def render(rows_out: list[Row], header: list[str]) -> str:
    """The Markdown report: header lines, the table, the method notes."""
    lines = header + ["", "| # | measurement | figures | result | target | verdict | runs |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.num} | {r.what} | {r.figures} | {r.result} | {r.target} | {r.verdict} | {r.runs} |"
              for r in rows_out]
    return "\n".join(lines + ["", NOTES])


def pick_rows(only: str) -> list[str]:
    """Row names from --only (names or numbers 1-11, comma-separated); all rows when empty."""
    if not only:
        return list(ROWS)
    names = list(ROWS)
    picked = []
    for item in (s.strip() for s in only.split(",") if s.strip()):
        name = names[int(item) - 1] if item.isdigit() and 1 <= int(item) <= len(names) else item
        if name not in ROWS:
            raise PebbleError(f"--only {item!r} is not a row; choose from {', '.join(names)} or 1-{len(names)}")
        picked.append(name)
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and 2 repeats: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated row names or numbers: " + ", ".join(ROWS))
    parser.add_argument("--out", default="", help="write the report here (default: bench/RESULTS.md for a full "
                                                  "run of every row; nothing for --quick or --only)")
    args = parser.parse_args()
    names = pick_rows(args.only)
    out = Path(args.out) if args.out else (RESULTS if not args.quick and not args.only else None)

    keep_freed_memory()  # as trainer_utils.train does
    start, whole_run = datetime.datetime.now(), OtherLoad()
    bench = Bench(QUICK if args.quick else FULL)
    header = ["# Pebble benchmark results", "",
              f"Written by `python bench/run.py{' --quick' if args.quick else ''}"
              f"{' --only ' + args.only if args.only else ''}` on {start:%Y-%m-%d %H:%M}; "
              f"base model: {bench.base_name}.", "", machine_line(bench.dtype)]
    results: list[Row] = []
    for name in names:
        t0, row_load = datetime.datetime.now(), OtherLoad()
        new = ROWS[name](bench)
        others = row_load.share()
        if others > NOTE_LOAD:  # flag the rows that other processes disturbed
            for r in new:
                r.runs += f"; **other processes used {100 * others:.0f}% of the CPU**"
        results += new
        print(f"[{name}] {(datetime.datetime.now() - t0).total_seconds():.0f} s: {new[-1].figures}", flush=True)
    total, others = (datetime.datetime.now() - start).total_seconds(), whole_run.share()
    header.append(f"Total time {total:.0f} s; other processes used {100 * others:.0f}% of the CPU meanwhile.")
    if others > BUSY_LIMIT:
        header.append("**Warning: the machine was not idle. With one torch thread per core, another busy process "
                      "makes the threads wait for each other at every parallel op and small ops slow down many "
                      "times over, so these figures are unreliable; rerun on an idle machine.**")
    report = render(results, header)
    print("\n" + report)
    if out is not None:
        out.write_text(report + "\n", encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    run_cli(main)
