"""Whole-process wall time of one LoRA job run by MiniMind's trainer/train_lora.py and by ours.

    python bench/vs_minimind.py --minimind_dir /tmp/minimind     # both trainers, then the table
    python bench/vs_minimind.py --only pebble                    # ours alone (no MiniMind checkout needed)
    python bench/vs_minimind.py --minimind_dir DIR --repeats 2   # alternate the order: P M, M P

The job, the same on both sides: a random-init base of MiniMind-3's shape at hidden 256 and 4 layers (8 heads,
4 KV heads, intermediate 832, vocab 6400, q/k norms; MiniMind's config defaults), a rank-16 adapter with scale 1
on the square layers (q_proj and o_proj), 1024 short seeded self-introduction dialogues, batch 16, one epoch
(64 steps), learning rate 1e-4, max_seq_len as MiniMind's LoRA trainer defaults it (read from its file),
fp32 restricted to AVX2 (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA), the adapter
written once at the end, no prompt answered before or after training (our trainer's default 2 probe prompts
are switched off; --probe_count 2 puts them back). Each side keeps its own tokenizer (both byte-level BPE, 6400
tokens) and its own way of batching: MiniMind pads every sample to max_seq_len, we pad each batch to its longest
sample.

MiniMind's checkout is only read: its trainer/, model/ and dataset/ folders are copied into a temp folder laid
out as its trainer expects (the base in out/full_sft_256.pth, the data in dataset/, run from trainer/), with
`--dtype float32` (on a CPU it never autocasts; anything but float16 also leaves its GradScaler off) and
`--num_workers` from --minimind_workers. Its Hugging Face datasets cache goes to the temp folder as well.

Every output line of both processes is timestamped as it arrives, which splits the wall time into phases
(start-up and data, model, probes, training, the end). Two more runs of ours attribute its start-up: `python -X
importtime` of its imports, and cProfile over the whole trainer cut to 2 steps.
"""
import argparse
import json
import os
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from bench.common import cpu_flags, cpu_model
from model.checkpoint import save_model
from model.common import REPO_ROOT, PebbleError, run_cli
from model.model_pebble import PebbleConfig, PebbleForCausalLM

AVX2_FP32 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
HIDDEN, LAYERS, HEADS, KV_HEADS = 256, 4, 8, 4
RANK, BATCH, SAMPLES, LR = 16, 16, 1024, 1e-4
BASE_NAME, LORA_NAME = "full_sft", "lora_bench"


# ---------------------------------------------------------------- the job's inputs

def identity_dialogues(count: int, seed: int) -> list[dict]:
    """count seeded short self-introduction chats (Chinese and English, one or two exchanges each)."""
    rng = random.Random(seed)
    name, lab = "Nova", "Starlight Lab"
    en_q = ["Who are you", "What is your name", "Introduce yourself", "Who built you", "Which company trained you",
            "Are you ChatGPT", "What can you help me with", "Tell me a little about yourself", "Do you have a name"]
    en_a = [f"I am {name}, an AI assistant developed by {lab}.", f"My name is {name}. {lab} trained me.",
            f"I'm {name}, a small language model from {lab}. I can answer questions and help with writing.",
            f"No, I am not ChatGPT. I am {name}, made by {lab}.", f"{lab} built me; you can call me {name}."]
    zh_q = ["你是谁", "你叫什么名字", "请介绍一下你自己", "你是哪家公司开发的", "你是ChatGPT吗", "你能做些什么", "谁训练了你"]
    zh_a = [f"我是{name}，由{lab}开发的AI助手。", f"我的名字是{name}，{lab}训练了我。",
            f"你好！我是{name}，一个来自{lab}的小型语言模型，可以回答问题、帮助写作。",
            f"不是的，我是{name}，由{lab}开发。"]
    openers = ["", "Hi! ", "Hello, ", "Hey there. ", "Quick question: "]
    rows = []
    for _ in range(count):
        zh = rng.random() < 0.5
        turns = []
        for _ in range(rng.choice((1, 1, 1, 2))):
            if zh:
                q = rng.choice(["", "你好，", "请问"]) + rng.choice(zh_q) + rng.choice(["？", "?", "呀？"])
                a = rng.choice(zh_a)
            else:
                q = rng.choice(openers) + rng.choice(en_q) + rng.choice(["?", "??", "."])
                a = rng.choice(en_a)
            turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rows.append({"conversations": turns})
    return rows


def write_inputs(tmp: Path, seed: int) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """The data file, our base file and the MiniMind-format base state_dict (float16, lm_head included)."""
    data = tmp / "data" / "bench_identity.jsonl"
    data.parent.mkdir(parents=True)
    with open(data, "w", encoding="utf-8") as f:
        for row in identity_dialogues(SAMPLES, seed):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    torch.manual_seed(seed)
    model = PebbleForCausalLM(PebbleConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                           num_key_value_heads=KV_HEADS))
    ours = save_model(model, tmp / "pebble_out" / f"{BASE_NAME}_{HIDDEN}.safetensors", dtype=torch.float16)
    theirs = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    return data, ours, theirs


def minimind_layout(minimind_dir: Path, tmp: Path, data: Path, base: dict[str, torch.Tensor]) -> Path:
    """Copy MiniMind's code into tmp/minimind and put the base and data where its trainer looks; -> trainer dir."""
    root = tmp / "minimind"
    for sub in ("trainer", "model", "dataset"):
        if not (minimind_dir / sub).is_dir():
            raise PebbleError(f"{minimind_dir} has no {sub}/ folder; pass --minimind_dir the root of a MiniMind "
                              "checkout (git clone https://github.com/jingyaogong/minimind)")
        shutil.copytree(minimind_dir / sub, root / sub, ignore=shutil.ignore_patterns("*.jsonl", "__pycache__"))
    (root / "out").mkdir()
    torch.save(base, root / "out" / f"{BASE_NAME}_{HIDDEN}.pth")
    shutil.copy(data, root / "dataset" / data.name)
    return root / "trainer"


def minimind_max_seq_len(trainer_dir: Path) -> int:
    """The --max_seq_len default that MiniMind's LoRA trainer declares."""
    text = (trainer_dir / "train_lora.py").read_text(encoding="utf-8")
    found = re.search(r"""['"]--max_seq_len['"]\s*,\s*default\s*=\s*(\d+)""", text)
    if not found:
        raise PebbleError(f"found no --max_seq_len default in {trainer_dir / 'train_lora.py'}; pass --max_seq_len")
    return int(found.group(1))


# ---------------------------------------------------------------- running one trainer

def load_average() -> str:
    with open("/proc/loadavg", encoding="utf-8") as f:
        return " ".join(f.read().split()[:3])


def busy_seconds() -> tuple[float, float]:
    """(all, busy) CPU seconds summed over cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="utf-8") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return sum(values) / hz, (sum(values) - values[3] - values[4]) / hz


@dataclass
class Run:
    """One trainer process: its timestamped output lines and what the machine did meanwhile."""

    side: str
    wall_s: float = 0.0
    returncode: int = 0
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since launch, text)
    load_before: str = ""
    load_after: str = ""
    cpu_s: float = 0.0  # user + system CPU seconds of the process and its children
    others_share: float = 0.0  # share of all cores that other processes kept busy during the run

    def first(self, pattern: str) -> Optional[tuple[float, str]]:
        return next(((t, s) for t, s in self.lines if re.search(pattern, s)), None)

    def last(self, pattern: str) -> Optional[tuple[float, str]]:
        return next(((t, s) for t, s in reversed(self.lines) if re.search(pattern, s)), None)


def run_process(side: str, cmd: list[str], cwd: Path, env: dict, log: Path) -> Run:
    """Run cmd to exit, timestamping each output line (split at \\n and \\r, so progress bars count too)."""
    run = Run(side, load_before=load_average())
    usage0, (all0, busy0) = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pending = b""
    with open(log, "w", encoding="utf-8") as out:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            now = time.perf_counter() - t0
            pending += chunk
            *done, pending = re.split(rb"[\r\n]", pending)
            for line in (s.decode("utf-8", "replace") for s in done if s.strip()):
                run.lines.append((now, line))
                out.write(f"{now:8.2f}  {line}\n")
    run.returncode = proc.wait()
    run.wall_s = time.perf_counter() - t0
    if pending.strip():
        run.lines.append((run.wall_s, pending.decode("utf-8", "replace")))
    usage1, (all1, busy1) = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
    run.cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    run.others_share = max(0.0, (busy1 - busy0) - run.cpu_s) / max(all1 - all0, 1e-9)
    run.load_after = load_average()
    if run.returncode != 0:
        tail = "\n".join(s for _, s in run.lines[-15:])
        raise PebbleError(f"the {side} trainer exited with code {run.returncode} (full output in {log}):\n{tail}")
    return run


def pebble_command(tmp: Path, data: Path, max_seq_len: int, probes: int = 0) -> list[str]:
    """Our trainer on the job; probes=0, as MiniMind's trainer answers no prompt before or after training."""
    return [sys.executable, str(REPO_ROOT / "trainer" / "train_lora.py"), "--device", "cpu", "--dtype", "float32",
            "--save_dir", str(tmp / "pebble_out"), "--from_weight", BASE_NAME, "--hidden_size", str(HIDDEN),
            "--num_hidden_layers", str(LAYERS), "--data_path", str(data), "--lora_name", LORA_NAME,
            "--targets", "square", "--rank", str(RANK), "--alpha", str(RANK), "--replay_data", "none",
            "--batch_size", str(BATCH), "--epochs", "1", "--learning_rate", str(LR), "--max_seq_len", str(max_seq_len),
            "--log_interval", "10", "--save_interval", "100000", "--probe_count", str(probes)]


def minimind_command(data: Path, max_seq_len: int, workers: int) -> list[str]:
    return [sys.executable, "train_lora.py", "--device", "cpu", "--dtype", "float32", "--num_workers", str(workers),
            "--save_dir", "../out", "--from_weight", BASE_NAME, "--hidden_size", str(HIDDEN),
            "--num_hidden_layers", str(LAYERS), "--data_path", f"../dataset/{data.name}", "--lora_name", LORA_NAME,
            "--batch_size", str(BATCH), "--epochs", "1", "--learning_rate", str(LR), "--max_seq_len", str(max_seq_len),
            "--log_interval", "10", "--save_interval", "100000"]


# ---------------------------------------------------------------- reading the output

def pebble_steps_and_training(run: Run) -> tuple[int, float]:
    """(steps, training seconds) from our trainer's closing 'wrote ... after N steps, E s of training' line."""
    found = run.last(r"after \d+ steps, [\d.]+ s of training")
    if not found:
        raise PebbleError("our trainer printed no 'wrote ... after N steps' line")
    m = re.search(r"after (\d+) steps, ([\d.]+) s of training", found[1])
    return int(m.group(1)), float(m.group(2))


def minimind_steps(run: Run) -> int:
    found = run.last(r"\(\d+/\d+\)")
    if not found:
        raise PebbleError("MiniMind's trainer printed no '(step/steps)' log line")
    step, total = map(int, re.search(r"\((\d+)/(\d+)\)", found[1]).groups())
    return step if step == total else -step


def phases(run: Run, marks: list[tuple[str, str, bool]]) -> list[tuple[str, float]]:
    """Seconds between consecutive marks: (phase name, regex of the line that ends it, take the last match)."""
    out, prev = [], 0.0
    for name, pattern, last in marks:
        hit = run.last(pattern) if last else run.first(pattern)
        if hit is None:
            continue
        out.append((name, hit[0] - prev))
        prev = hit[0]
    out.append(("exit (after the last line)", run.wall_s - prev))
    return out


PEBBLE_MARKS = [  # (phase, the line that ends it, last match) in the order train_lora.py prints them
    ("interpreter, imports, tokenizer, data read + tokenized", r"samples from", False),
    ("base loaded, adapter attached", r"^LoRA '", False),
    ("model to device, dtype chosen", r"^base \S+ hidden", False),
    ("probe replies before training (greedy, 64 new tokens)", r"^--- base, before training", False),
    ("optimizer, batches, progress bar created", rf"{LORA_NAME}_{HIDDEN}:\s+0%", False),
    ("training steps (until the bar's last update)", rf"{LORA_NAME}_{HIDDEN}:\s+100%", True),
    ("end checkpoint + adapter written, probe replies after", r"^--- with ", False),
    ("printing the replies", r"^wrote ", False),
]
MINIMIND_MARKS = [
    ("interpreter, imports, tokenizer, model built + base loaded", r"Model Params", False),
    ("adapter attached, counts printed", r"LoRA", True),
    ("dataset, optimizer, the first 10 steps", r"\(10/\d+\)", False),
    ("the remaining steps (last log line)", r"\((\d+)/\1\)", False),
]


IMPORTS_SHOWN = ["torch", "datasets", "pandas", "transformers", "model.model_pebble", "transformers.distributed.fsdp",
                 "torch.distributed.tensor", "sympy", "transformers.masking_utils", "torch._dynamo",
                 "transformers.integrations.finegrained_fp8", "model.chat", "dataset.lm_dataset", "trainer.train_lora"]


def import_costs(env: dict) -> tuple[float, float, dict[str, float]]:
    """(wall of `python -c pass`, wall of `import trainer.train_lora`, {module: cumulative seconds of its first
    import}) from `python -X importtime`; a module imported inside another counts in both."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    bare = time.perf_counter() - t
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", "import trainer.train_lora"], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    costs = {}
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s+(\S+)$", line)
        if m and m.group(2) in IMPORTS_SHOWN:
            costs[m.group(2)] = int(m.group(1)) / 1e6
    return bare, wall, costs


PROFILED = ["load_tokenizer", "load_data", "load_model", "fingerprint", "apply_lora", "probe_prompts", "show_probes",
            "train", "save_checkpoint", "save_lora"]  # functions of train_lora.py and its helpers, in call order


def profile_pebble(tmp: Path, data: Path, max_seq_len: int, env: dict) -> tuple[float, float, list]:
    """Our trainer under cProfile for 2 steps -> (process wall s, seconds outside main() (interpreter and
    imports), [(function, calls, cumulative s)]). cProfile slows Python-heavy code (generation) the most."""
    prof = tmp / "pebble.prof"
    cmd = pebble_command(tmp, data, max_seq_len)
    cmd[1:1] = ["-m", "cProfile", "-o", str(prof)]
    cmd += ["--max_steps", "2", "--lora_name", "lora_profile"]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=tmp, env={**env, "TQDM_DISABLE": "1"}, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    stats = pstats.Stats(str(prof)).stats  # {(file, line, name): (calls, ncalls, own s, cumulative s, callers)}
    ours = {name: (nc, ct) for (file, _, name), (_, nc, _, ct, _) in stats.items()
            if file.startswith(str(REPO_ROOT)) and "site-packages" not in file and name in PROFILED + ["main"]}
    outside = max(ct for (_, _, name), (*_, ct, _) in stats.items() if name == "<module>") - ours["main"][1]
    return wall, outside, [(name, *ours[name]) for name in PROFILED if name in ours]


# ---------------------------------------------------------------- the report

def check_same_base(trainer_dir: Path, base: dict[str, torch.Tensor]) -> str:
    """Compare the full state_dict MiniMind wrote at the end with the base we gave it: proof it loaded every
    tensor (its loader is not strict)."""
    found = sorted((trainer_dir.parent / "checkpoints").glob(f"{LORA_NAME}_{HIDDEN}.pth"))
    if not found:
        return "no MiniMind checkpoint found to compare with the base"
    saved = torch.load(found[0], map_location="cpu", weights_only=True)
    missing = sorted(set(base) - set(saved))
    differ = sorted(k for k in set(base) & set(saved) if not torch.equal(saved[k], base[k]))
    extra = sorted(k for k in set(saved) - set(base) if ".lora." not in k)
    if missing or differ or extra:
        return f"MiniMind's model differs from the base: missing {missing[:3]}, other values {differ[:3]}, " \
               f"extra {extra[:3]}"
    return f"MiniMind trained on exactly the base we wrote ({len(base)} tensors, same keys and values)"


def report(runs: list[Run], steps: dict[str, list[int]], pebble_train: list[float], imports, profile,
           notes: list[str]) -> None:
    flags = sorted({f for f in cpu_flags() if f in ("avx2", "avx512_bf16", "amx_bf16")})
    print(f"\nCPU: {cpu_model()} ({', '.join(flags)}); {os.cpu_count()} cores; torch {torch.__version__}; "
          f"env {' '.join(f'{k}={v}' for k, v in AVX2_FP32.items())}")
    print("\n| run | trainer | steps | wall s (launch to exit) | training s (its own figure) | CPU s | "
          "load avg before -> after | others' CPU share |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    train_iter = iter(pebble_train)
    for i, r in enumerate(runs, 1):
        own = f"{next(train_iter):.1f}" if r.side == "pebble" else "-"
        n = steps[r.side][sum(1 for q in runs[:i] if q.side == r.side) - 1]
        print(f"| {i} | {r.side} | {n} | {r.wall_s:.1f} | {own} | {r.cpu_s:.1f} | {r.load_before} -> {r.load_after}"
              f" | {100 * r.others_share:.0f}% |")
    walls = {side: statistics.median(r.wall_s for r in runs if r.side == side) for side in ("pebble", "minimind")
             if any(r.side == side for r in runs)}
    if len(walls) == 2:
        print(f"\nwall time MiniMind / Pebble: {walls['minimind'] / walls['pebble']:.2f}x "
              f"(medians: {walls['minimind']:.1f} s / {walls['pebble']:.1f} s)")
    for r in runs:
        marks = PEBBLE_MARKS if r.side == "pebble" else MINIMIND_MARKS
        print(f"\n{r.side} run, phases by the time their output lines appeared (s):")
        for name, s in phases(r, marks):
            print(f"  {s:7.2f}  {name}")
        if r.side == "pebble":
            _, train_s = pebble_steps_and_training(r)
            print(f"  -> not training: {r.wall_s - train_s:.1f} s of {r.wall_s:.1f} s")
    if imports:
        bare, wall, costs = imports
        print(f"\nimports (`python -X importtime`): `python -c pass` {bare:.2f} s; `import trainer.train_lora` "
              f"{wall:.2f} s wall. Cumulative s of each module's first import (a nested one counts in its importer "
              "too):")
        print("  " + ", ".join(f"{n} {s:.2f}" for n, s in costs.items()))
    if profile:
        wall, outside, funcs = profile
        print(f"\nour trainer under cProfile, 2 steps: {wall:.1f} s wall; {outside:.1f} s before main() "
              "(interpreter and imports); cumulative s (calls) of:")
        print("  " + ", ".join(f"{n} {ct:.2f} ({nc})" for n, nc, ct in funcs))
    for note in notes:
        print(note)


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minimind_dir", type=Path, help="root of a MiniMind checkout (needed unless --only pebble)")
    parser.add_argument("--only", choices=("pebble", "minimind"), help="run one trainer only")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each trainer, order alternating")
    parser.add_argument("--minimind_workers", type=int, default=0,
                        help="MiniMind's --num_workers (its default 8 forks 8 loaders; 0 loads in its main process, "
                             "as ours does)")
    parser.add_argument("--max_seq_len", type=int, default=0,
                        help="0: MiniMind's LoRA default (340 without a checkout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, weights, adapters)")
    parser.add_argument("--probe_count", type=int, default=0,
                        help="prompts our trainer answers before and after training (0: none, as MiniMind's trainer)")
    parser.add_argument("--no_probes", action="store_true",
                        help="skip the two start-up probes of our trainer (-X importtime, cProfile of 2 steps)")
    args = parser.parse_args()
    sides = [args.only] if args.only else ["pebble", "minimind"]
    if "minimind" in sides and args.minimind_dir is None:
        raise PebbleError("pass --minimind_dir DIR (a MiniMind checkout), or --only pebble")

    tmp = Path(tempfile.mkdtemp(prefix="vs_minimind."))
    env = {**os.environ, **AVX2_FP32, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp / "hf_datasets_cache")}
    try:
        data, ours, base = write_inputs(tmp, args.seed)
        trainer_dir = minimind_layout(args.minimind_dir.resolve(), tmp, data, base) if "minimind" in sides else None
        max_seq_len = args.max_seq_len or (minimind_max_seq_len(trainer_dir) if trainer_dir else 340)
        print(f"job: {SAMPLES} dialogues ({data}), base {ours.name} = hidden {HIDDEN}, {LAYERS} layers, {HEADS} heads, "
              f"{KV_HEADS} KV heads; rank {RANK} on square layers, batch {BATCH}, 1 epoch, max_seq_len {max_seq_len}, "
              f"lr {LR}; fp32 AVX2; temp folder {tmp}")
        runs: list[Run] = []
        steps: dict[str, list[int]] = {"pebble": [], "minimind": []}
        pebble_train: list[float] = []
        for r in range(args.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                log = tmp / f"{side}_{r}.log"
                print(f"running {side} (output in {log}) ...", flush=True)
                if side == "pebble":
                    run = run_process(side, pebble_command(tmp, data, max_seq_len, args.probe_count), tmp, env, log)
                    n, train_s = pebble_steps_and_training(run)
                    pebble_train.append(train_s)
                else:
                    cmd = minimind_command(data, max_seq_len, args.minimind_workers)
                    run = run_process(side, cmd, trainer_dir, env, log)
                    n = minimind_steps(run)
                steps[side].append(n)
                runs.append(run)
                print(f"  {side}: {n} steps, {run.wall_s:.1f} s wall (load avg {run.load_before} -> {run.load_after})")
        notes = []
        if trainer_dir:
            notes.append(check_same_base(trainer_dir, base))
        expected = SAMPLES // BATCH
        for side in sides:
            if any(n != expected for n in steps[side]):
                notes.append(f"WARNING: {side} trained {steps[side]} steps, not {expected}")
        if any(r.others_share > 0.05 for r in runs):
            notes.append("WARNING: other processes used over 5% of the CPU during a run; its time is inflated")
        probe = not args.no_probes and "pebble" in sides
        if probe:
            print("probing our trainer's start-up (-X importtime, cProfile) ...", flush=True)
        imports = import_costs(env) if probe else None
        profile = profile_pebble(tmp, data, max_seq_len, env) if probe else None
        report(runs, steps, pebble_train, imports, profile, notes)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_cli(main)
