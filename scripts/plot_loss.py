"""Turn training logs (out/*.log.jsonl, one JSON object per logged step) into a PNG loss curve.

    python scripts/plot_loss.py out/pretrain_256.log.jsonl out/full_sft_256.log.jsonl --out out/loss.png
The PNG needs matplotlib, which is optional (pip install -r requirements-plot.txt); without it each curve is
drawn as text in the terminal.
"""
import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

MISSING_MATPLOTLIB = "(matplotlib is not installed, so no PNG: pip install -r requirements-plot.txt for one)"


def read_log(path: Path) -> tuple[list[int], list[float]]:
    """(steps, losses) from one metrics log; a missing file or a line without step and loss exits with one line."""
    if not path.is_file():
        sys.exit(f"error: {path} does not exist; pass a metrics log a trainer wrote (out/NAME_HIDDEN.log.jsonl)")
    steps, losses = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                steps.append(int(record["step"]))
                losses.append(float(record["loss"]))
            except (ValueError, TypeError, KeyError):
                sys.exit(f"error: {path} line {number} is not a metrics record with step and loss; "
                         "pass a log a trainer wrote")
    return steps, losses


def text_plot(name: str, steps: list[int], losses: list[float], width: int = 60, height: int = 12) -> str:
    """The loss against the step as rows of characters: a log-scale y axis, one column per slice of the steps."""
    low, high = math.log(min(losses)), math.log(max(losses))
    span = (high - low) or 1.0
    columns = [min(range(len(steps)), key=lambda i: abs(steps[i] - (steps[0] + (steps[-1] - steps[0]) * c /
                                                                      max(width - 1, 1)))) for c in range(width)]
    heights = [round((math.log(losses[i]) - low) / span * (height - 1)) for i in columns]  # 0 = the lowest loss
    rows = []
    for h in range(height - 1, -1, -1):
        label = f"{max(losses):8.3f} |" if h == height - 1 else f"{min(losses):8.3f} |" if h == 0 else " " * 9 + "|"
        rows.append(label + "".join("*" if x == h else " " for x in heights))
    rows.append(" " * 9 + "+" + "-" * width)
    rows.append(" " * 10 + f"step {steps[0]}".ljust(width - len(f"step {steps[-1]}")) + f"step {steps[-1]}")
    return f"{name} (loss, log scale)\n" + "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Plot the loss of each log against the optimizer step, on a log scale, into one PNG."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="metrics logs written by the trainers")
    parser.add_argument("--out", type=Path, default=Path("out/loss.png"))
    args = parser.parse_args(argv)
    curves = {path.name.removesuffix(".log.jsonl"): read_log(path) for path in args.logs}
    try:
        import matplotlib
    except ImportError:
        for name, (steps, losses) in curves.items():
            print(text_plot(name, steps, losses) + "\n")
        print(MISSING_MATPLOTLIB)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (steps, losses) in curves.items():
        ax.plot(steps, losses, label=name)
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
