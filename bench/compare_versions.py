"""Two code versions on bench/run.py, interleaved on this host: each run in its own process, A B, B A, A B, ...

    python bench/compare_versions.py HEAD~1 --only 8,10           # HEAD~1 (A) vs HEAD (B), 3 runs of each
    python bench/compare_versions.py v1 v2 --rounds 5 --reports /tmp/cmp
    python bench/compare_versions.py --only switch --quick --rounds 1   # smoke run

Each revision is exported with `git archive` into a temp folder (so uncommitted changes are in neither) and runs
its own bench/run.py with this Python. Prints, per row and figure of the results table, the median of A's and
B's runs, B/A, the range (min-max) of each, and a flag where B is more than 5% slower and the ranges do not
overlap; and per run the share of the CPU other processes used (/proc/stat, as run.py records it).
"""
import argparse
import filecmp
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import DATA, DEMO_BASE, PROMPTS, median
from bench.run import BUSY_LIMIT, LORA_DIR
from model.common import REPO_ROOT, PebbleError, run_cli

SLOWER = 1.05  # B slower than A by more than this factor (and the ranges apart) is flagged
# A figure in a results cell: a number and its unit. Lower is better for times and memory, higher for rates.
FIGURE = re.compile(r"(-?\d+(?:\.\d+)?) ?(GFLOP/s|tok/s|/s|ms|MiB|s)(?![\w/])")
HIGHER_IS_BETTER = {"GFLOP/s", "tok/s", "/s"}
LOAD = re.compile(r"other processes used (\d+)% of the CPU")

Figures = dict[str, dict[str, tuple[float, str]]]  # row number -> figure name -> (value, unit)


def export(rev: str, dest: Path) -> str:
    """Write the files of git revision rev into dest; returns its short commit hash."""
    found = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--short", f"{rev}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise PebbleError(f"{rev!r} is not a commit of the repository in {REPO_ROOT}; give a revision git knows")
    commit = found.stdout.strip()
    dest.mkdir(parents=True)
    with subprocess.Popen(["git", "-C", str(REPO_ROOT), "archive", commit], stdout=subprocess.PIPE) as git:
        with tarfile.open(fileobj=git.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
    return commit


def bench_inputs() -> list[Path]:
    """The files bench/run.py reads besides code, relative to the repository: base, adapters, data, prompts."""
    files = [DEMO_BASE, *sorted(LORA_DIR.glob("*.safetensors")), DATA, PROMPTS]
    return [f.relative_to(REPO_ROOT) for f in files if f.is_file()]


def link_missing(tree: Path, inputs: list[Path]) -> list[str]:
    """Link each input the exported tree lacks to this checkout's copy; returns the paths linked."""
    linked = []
    for rel in inputs:
        if not (tree / rel).exists():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).symlink_to(REPO_ROOT / rel)
            linked.append(str(rel))
    return linked


def parse_report(text: str) -> tuple[Figures, dict[str, int], Optional[int]]:
    """(figures per row, other load per flagged row in %, whole-run other load in %) of one run.py report."""
    figures: Figures = {}
    row_load: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| # ") or line.startswith("| ---"):
            continue
        cells = line.strip().strip("|").split(" | ")
        num, found = cells[0].strip(), {}
        for part in cells[2].split("; "):
            part = re.sub(r"\([^()]*\)", "", part)  # "(23 held + 160 in step)" and the like are detail
            matches = list(FIGURE.finditer(part))
            if matches:
                name = part[:matches[0].start()].strip(" ,:")
                if not name or name[0].isdigit():  # row 11: "162 steps in 68.1 s of training"
                    name = part[matches[0].end():].split(",")[0].strip().removeprefix("of ")
                found.update({f"{name} ({m[2]})": (float(m[1]), m[2]) for m in matches})
            elif m := re.fullmatch(r"\s*(.+?):\s*(-?\d+(?:\.\d+)?)\s*", part):  # row 4a: "float32 1024: 147"
                found[m[1]] = (float(m[2]), "")
        figures[num] = found
        if m := LOAD.search(cells[-1]):
            row_load[num] = int(m[1])
    whole = re.search(r"Total time .*" + LOAD.pattern, text)
    return figures, row_load, int(whole[1]) if whole else None


def slowdown(a: float, b: float, unit: str) -> Optional[float]:
    """How many times longer B takes than A (for memory: how many times more); None for unit-less figures."""
    if not unit or min(a, b) <= 0:
        return None
    return a / b if unit in HIGHER_IS_BETTER else b / a


def figure_table(runs: dict[str, list[Figures]]) -> tuple[list[str], list[str]]:
    """The per-figure comparison as Markdown lines, and the flagged figures."""
    lines = ["| row | figure | A median | B median | B/A | A range | B range | flag |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    flagged = []
    reports = runs["A"] + runs["B"]
    for num in dict.fromkeys(num for report in reports for num in report):
        for name in dict.fromkeys(name for report in reports for name in report.get(num, {})):
            values = {v: [r[num][name][0] for r in runs[v] if name in r.get(num, {})] for v in "AB"}
            if not values["A"] or not values["B"]:
                lines.append(f"| {num} | {name} | | | | | | only in {'A' if values['A'] else 'B'} |")
                continue
            unit = next(r[num][name][1] for r in reports if name in r.get(num, {}))
            a, b = median(values["A"]), median(values["B"])
            span = {v: f"{min(values[v]):.4g}-{max(values[v]):.4g}" for v in "AB"}
            worse = slowdown(a, b, unit)
            apart = (max(values["B"]) < min(values["A"]) if unit in HIGHER_IS_BETTER
                     else min(values["B"]) > max(values["A"]))
            flag = ""
            if worse is not None and worse > SLOWER:
                flag = f"B {100 * (worse - 1):.0f}% {'larger' if unit == 'MiB' else 'slower'}"
                if apart:
                    flag = f"**{flag}**"
                    flagged.append(f"row {num} {name}")
                else:
                    flag += ", ranges overlap"
            lines.append(f"| {num} | {name} | {a:.4g} | {b:.4g} | {b / a:.3f} | {span['A']} | {span['B']} | {flag} |")
    return lines, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="revision A, the 'before' (e.g. HEAD~1)")
    parser.add_argument("b", nargs="?", default="HEAD", help="revision B, the 'after' (default: HEAD)")
    parser.add_argument("--only", default="", help="rows to run, as run.py's --only (default: every row)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to run.py: a smoke run of this script")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each version (default 3)")
    parser.add_argument("--reports", default="", help="keep each run's report in this folder (default: discarded)")
    args = parser.parse_args()
    if args.rounds < 1:
        raise PebbleError("--rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="pebble_compare_") as tmp:
        reports = Path(args.reports or tmp).resolve()  # absolute: run.py runs in the exported tree
        reports.mkdir(parents=True, exist_ok=True)
        # 1. One exported tree per revision, with any bench input it lacks linked from this checkout.
        trees, commits, inputs = {}, {}, bench_inputs()
        for v, rev in (("A", args.a), ("B", args.b)):
            trees[v] = Path(tmp) / v
            commits[v] = export(rev, trees[v])
            print(f"{v} = {rev} ({commits[v]})")
            for rel in link_missing(trees[v], inputs):
                print(f"  {v} lacks {rel}: linked to this checkout's copy")
        differ = [str(rel) for rel in inputs if not filecmp.cmp(trees["A"] / rel, trees["B"] / rel, shallow=False)]
        if differ:
            print(f"inputs whose bytes differ between A and B (each version uses its own): {', '.join(differ)}")

        # 2. The runs, alternating A B, B A, ... so that a drift in the host's speed hits both versions alike.
        options = (["--quick"] if args.quick else []) + (["--only", args.only] if args.only else [])
        order = [v for r in range(args.rounds) for v in ("AB" if r % 2 == 0 else "BA")]
        runs: dict[str, list[Figures]] = {"A": [], "B": []}
        run_lines = ["| run | version | wall s | other load, whole run | rows other processes disturbed (> 2%) |",
                     "| --- | --- | --- | --- | --- |"]
        busy, machine = False, ""
        for i, v in enumerate(order, 1):
            out = reports / f"run{i}_{v}.md"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "bench/run.py", *options, "--out", str(out)], cwd=trees[v],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0 or not out.is_file():
                raise PebbleError(f"run {i} ({v}, {commits[v]}) of bench/run.py failed: {proc.stderr.strip()[-1500:]}")
            text = out.read_text(encoding="utf-8")
            machine = machine or next((line for line in text.splitlines() if line.startswith("CPU: ")), "")
            figures, row_load, whole = parse_report(text)
            runs[v].append(figures)
            busy |= whole is None or whole > 100 * BUSY_LIMIT
            disturbed = ", ".join(f"{num} ({share}%)" for num, share in row_load.items()) or "none"
            load = "unknown" if whole is None else f"{whole}%"
            run_lines.append(f"| {i} | {v} | {wall:.0f} | {load} | {disturbed} |")
            print(f"run {i}/{len(order)}: {v} in {wall:.0f} s, other load {load}", flush=True)

    lines, flagged = figure_table(runs)
    runs_of_each = f"{args.rounds} run{'s' * (args.rounds > 1)} of each"
    print("\n" + "\n".join([f"A = {args.a} ({commits['A']}), B = {args.b} ({commits['B']}); run.py "
                            f"{' '.join(options)}; {runs_of_each}, order {' '.join(order)}",
                            machine, ""] + run_lines + [""] + lines + [""]))
    single = " (one run of each, so any such difference is flagged)" if args.rounds == 1 else ""
    print(f"B more than {100 * (SLOWER - 1):.0f}% slower, ranges apart: {', '.join(flagged) or 'none'}{single}.")
    if busy:
        print(f"Warning: other processes used more than {100 * BUSY_LIMIT:.0f}% of the CPU in some run; rerun on an "
              "idle machine before reading these figures.")
    if args.reports:
        print(f"reports of each run: {reports}")


if __name__ == "__main__":
    run_cli(main)
