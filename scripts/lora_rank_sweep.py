"""Train the identity adapter at several ranks and compare them: size, time, held-out loss, hit rate.

    python scripts/lora_rank_sweep.py                     # ranks 4 8 16 32, a table and out/lora_rank_sweep.png
Each rank trains with trainer/train_lora.py (same data, steps and learning rate; alpha = rank, so the scale
alpha/r stays 1). Adapters go to out/lora/sweep_identity_r{rank}_{hidden}.safetensors.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.lm_dataset import SFTDataset
from model.checkpoint import load_model
from model.common import REPO_ROOT, repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import load_tokenizer, weight_path
from model.lora_files import adapter_modules, load_lora
from trainer.evaluation import assistant_token_loss, expect_rate, first_user_turns
from trainer.runtime import autocast, resolve_dtype

ROOT = REPO_ROOT


def train_rank(rank: int, extra: list[str]) -> float:
    """Train one adapter in a subprocess; returns its wall time in seconds."""
    start = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "trainer" / "train_lora.py"), "--rank", str(rank), "--alpha", str(rank),
           "--lora_name", f"sweep_identity_r{rank}", "--probe_count", "0", *extra]
    env = {**os.environ, "TQDM_DISABLE": "1"}  # no progress bars from the child: the sweep prints its own lines
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--persona", default="Nova")
    parser.add_argument("--out", default="out/lora_rank_sweep.png")
    args, extra = parser.parse_known_args()  # anything else goes to train_lora.py (e.g. --epochs 2)
    tokenizer = load_tokenizer("model")
    eval_path = repo_path("dataset/lora_identity_eval.jsonl")
    data = SFTDataset(eval_path, tokenizer, 340)
    prompts = first_user_turns(eval_path)
    dtype = resolve_dtype("auto", "cpu")
    rows = []
    for rank in args.ranks:
        seconds = train_rank(rank, extra)
        model = load_model(weight_path(repo_path("out"), "full_sft", args.hidden_size)).eval()
        path = repo_path("out/lora") / f"sweep_identity_r{rank}_{args.hidden_size}.safetensors"
        name = load_lora(model, path)
        enable_fast_paths(model)
        with autocast("cpu", dtype):
            loss, _ = assistant_token_loss(model, data)
            hits = expect_rate(model, tokenizer, prompts, args.persona)
        params = sum(p.numel() for a in adapter_modules(model, name).values() for p in a.parameters())
        rows.append({"rank": rank, "params": params, "kb": path.stat().st_size / 1024, "seconds": seconds,
                     "loss": loss, "hits": hits})
        print(f"rank {rank}: {params:,} parameters, {rows[-1]['kb']:.0f} KB, {seconds:.0f} s, "
              f"held-out loss {loss:.3f}, {100 * hits:.0f}% name {args.persona}", flush=True)
    print("\n| rank | LoRA parameters | file | training time | held-out loss | names " + args.persona + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['rank']} | {r['params']:,} | {r['kb']:.0f} KB | {r['seconds']:.0f} s | {r['loss']:.3f} "
              f"| {100 * r['hits']:.0f}% |")
    plot(rows, repo_path(args.out), args.persona)


def plot(rows: list[dict], out, persona: str) -> None:
    """Held-out loss and hit rate against rank, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = [r["rank"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ranks, [r["loss"] for r in rows], "o-", label="held-out loss")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("LoRA rank")
    ax.set_ylabel("held-out identity loss")
    twin = ax.twinx()
    twin.plot(ranks, [100 * r["hits"] for r in rows], "s--", color="tab:orange", label=f"% naming {persona}")
    twin.set_ylabel(f"% answers naming {persona}")
    twin.set_ylim(0, 105)
    fig.legend(loc="center right", bbox_to_anchor=(0.85, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_cli(main)
