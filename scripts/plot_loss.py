"""Turn training logs (out/*.log.jsonl, one JSON object per logged step) into a PNG loss curve.

    python scripts/plot_loss.py out/pretrain_256.log.jsonl out/full_sft_256.log.jsonl --out out/loss.png
Needs matplotlib (pip install matplotlib).
"""
import argparse
import json
import sys
from pathlib import Path


def read_log(path: Path) -> tuple[list[int], list[float]]:
    """(steps, losses) from one metrics log."""
    steps, losses = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                steps.append(record["step"])
                losses.append(record["loss"])
    return steps, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="metrics logs written by the trainers")
    parser.add_argument("--out", type=Path, default=Path("out/loss.png"))
    args = parser.parse_args()
    try:
        import matplotlib
    except ImportError:
        sys.exit("error: plotting needs matplotlib; pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for path in args.logs:
        if not path.is_file():
            sys.exit(f"error: {path} does not exist")
        steps, losses = read_log(path)
        ax.plot(steps, losses, label=path.name.removesuffix(".log.jsonl"))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
