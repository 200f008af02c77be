"""Chat with a Pebble model and its LoRA adapters, swap adapters live, and measure them.

    python eval_llm.py                                          # chat with out/full_sft_256
    python eval_llm.py --lora_weight lora_identity,lora_medical # the first is active; /lora NAME switches
    python eval_llm.py --prompt "Who are you?" --compare --temperature 0     # base and each adapter
    python eval_llm.py --lora_weight lora_identity --eval_data dataset/lora_identity_eval.jsonl --expect Nova
    python eval_llm.py --load_from out/hf/full_sft_256 --prompt "Who are you?"   # a transformers export

Chat commands: /lora NAME (switch, loading out/lora/NAME_{hidden} if needed), /lora off, /lora list,
/reset, /help, /exit (or Ctrl-D). Works with our .safetensors weights and adapters and with MiniMind's .pth
files and tokenizer directory. The measuring functions live in trainer/evaluation.py.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

import torch

from dataset.lm_dataset import SFTDataset
from model.chat import Messages, TextStream, generate_replies, token_bytes
from model.common import PebbleError, repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import adapter_path, load_adapter, load_base, load_tokenizer, load_transformers, parse_names
from model.model_lora import ActiveSpec, adapter_active, adapter_names, lora_layers, set_active_lora
from trainer.config import TrainConfig
from trainer.config import add_device_flags
from trainer.evaluation import EXPECT_NEW_TOKENS, GenOptions, as_messages, batched_replies, evaluate
from trainer.runtime import autocast, resolve_device, resolve_dtype
from trainer.trainer_utils import count_parameters

NATIVE = "model"  # --load_from for our own weights (MiniMind's value for its native weights)

CHAT_HELP = """commands:
  /lora NAME   answer with adapter NAME (lora_identity or identity); loads out/lora/NAME_{hidden} if needed
  /lora off    answer with the base model alone
  /lora list   the loaded adapters, * marks the active one
  /reset       forget the conversation so far
  /help        this list
  /exit        leave (Ctrl-D too)"""


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line flags (MiniMind's eval_llm.py names, plus scripting and evaluation)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load_from", default=NATIVE,
                   help="model: our weights (--save_dir, --weight) and --tokenizer_path, as MiniMind's 'model' means "
                        "its own weights; or a transformers folder written by python scripts/convert_model.py hf, "
                        "loaded with AutoModelForCausalLM with its own tokenizer and no adapters (default: model)")
    p.add_argument("--save_dir", default="out", help="where the weights are: SAVE_DIR/WEIGHT_{hidden}.safetensors "
                   "or .pth, adapters in SAVE_DIR/lora/ (default: out)")
    p.add_argument("--weight", default="full_sft",
                   help="base weights name, e.g. full_sft or pretrain (default: full_sft)")
    p.add_argument("--lora_weight", default="None",
                   help="adapters to load, comma-separated (lora_identity,lora_medical); the first is active; "
                        "None for no adapter (default: None)")
    p.add_argument("--hidden_size", type=int, default=256, help="hidden size in the file names (default: 256)")
    p.add_argument("--num_hidden_layers", type=int, default=0,
                   help="only checked: the layer count is read from the weight file; 0 skips the check (default: 0)")
    p.add_argument("--tokenizer_path", default="model", help="tokenizer directory, ours or MiniMind's (default: model)")
    add_device_flags(p)
    p.add_argument("--max_new_tokens", type=int, default=256, help="longest reply in tokens (default: 256)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 is greedy and deterministic (default: 0.7)")
    p.add_argument("--top_p", type=float, default=0.9, help="nucleus sampling threshold (default: 0.9)")
    p.add_argument("--historys", type=int, default=4,
                   help="chat: previous messages sent with each prompt, two per exchange (MiniMind's meaning); "
                        "0 answers every prompt on its own; 4 keeps the last two exchanges (default: 4)")
    p.add_argument("--show_speed", type=int, default=0, choices=[0, 1],
                   help="chat: print tokens/s after each reply (default: 0)")
    p.add_argument("--prompt", action="append", default=[],
                   help="answer this prompt and exit instead of chatting (repeatable)")
    p.add_argument("--prompts_file", help="answer every line of this file as a prompt and exit")
    p.add_argument("--compare", action="store_true",
                   help="answer each prompt with the base and with each loaded adapter, side by side")
    p.add_argument("--eval_data", help='JSONL of {"conversations"}: report the assistant-token loss and perplexity '
                                       "of the base and of each loaded adapter")
    p.add_argument("--expect", help="with --eval_data: also report the share of greedy answers to each first user "
                                    f"turn ({EXPECT_NEW_TOKENS} new tokens) that contain this word (any case)")
    p.add_argument("--json", action="store_true", help="print answers and evaluation as one JSON object")
    p.add_argument("--batch_size", type=int, default=16, help="prompts or conversations per batch (default: 16)")
    p.add_argument("--max_seq_len", type=int, default=TrainConfig.max_seq_len,
                   help=f"--eval_data: truncate conversations as training does (default: {TrainConfig.max_seq_len})")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Reject flag values and combinations that cannot work, naming the flag."""
    for name in ("max_new_tokens", "batch_size", "max_seq_len"):
        if getattr(args, name) <= 0:
            raise PebbleError(f"--{name} must be positive, got {getattr(args, name)}")
    if not (0 <= args.temperature < math.inf and 0 < args.top_p <= 1):
        raise PebbleError(f"--temperature must be a number >= 0 and --top_p in (0, 1], got {args.temperature} and "
                          f"{args.top_p}")
    if args.historys < 0 or args.historys % 2:
        raise PebbleError(f"--historys counts messages, two per exchange, so it must be even and >= 0; "
                          f"got {args.historys}")
    scripted = bool(args.prompt or args.prompts_file)
    if args.compare and not scripted:
        raise PebbleError("--compare answers the prompts of --prompt or --prompts_file; give some")
    if args.expect is not None and not args.eval_data:
        raise PebbleError("--expect measures answers to the conversations of --eval_data; give that file too")
    if args.json and not (scripted or args.eval_data):
        raise PebbleError("--json prints scripted answers or an evaluation; "
                          "add --prompt, --prompts_file or --eval_data")
    if args.load_from != NATIVE:
        folder = repo_path(args.load_from)
        if not (folder / "config.json").is_file():
            raise PebbleError(f"--load_from {args.load_from}: give {NATIVE} (our weights) or a transformers folder "
                              f"with a config.json (python scripts/convert_model.py hf writes one); {folder} has none")
        if parse_names(args.lora_weight):
            raise PebbleError("--lora_weight adds adapters to our own weights, not to a transformers folder; fold one "
                              "in with python scripts/convert_model.py hf --merge NAME, or use --load_from model")


# ---------------------------------------------------------------- choosing adapters

def active_adapters(model) -> list[str]:
    """Names of the adapters that are active in any layer, in load order."""
    active = {n for _, layer in lora_layers(model) for n in layer.active}
    return [n for n in adapter_names(model) if n in active]


def active_label(model) -> str:
    """What answers now: 'base' or the active adapters joined by '+'."""
    return "+".join(active_adapters(model)) or "base"


def every_variant(model) -> list[tuple[str, ActiveSpec]]:
    """(label, active spec) for the base and for each loaded adapter."""
    return [("base", None)] + [(name, name) for name in adapter_names(model)]


def match_adapter(name: str, loaded: list[str]) -> Optional[str]:
    """The loaded adapter that `name` means: its full name, its short form without 'lora_', or an
    unambiguous prefix of either; None if none matches."""
    if name in loaded:
        return name
    short = name.removeprefix("lora_")
    for matches in ([n for n in loaded if n.removeprefix("lora_") == short],
                    [n for n in loaded if n.startswith(name) or n.removeprefix("lora_").startswith(short)]):
        if len(matches) > 1:
            raise PebbleError(f"{name!r} could mean {' or '.join(matches)}; type more of the name")
        if matches:
            return matches[0]
    return None


def switch_adapter(model, name: str, save_dir: Path) -> Optional[str]:
    """Make adapter `name` the only active one ('off': none), first loading it from save_dir if it is not
    loaded yet; the base stays as it is. Returns the active adapter's name."""
    if name == "off":
        set_active_lora(model, None)
        return None
    loaded = adapter_names(model)
    found = match_adapter(name, loaded)
    if found is None:
        try:
            path = adapter_path(save_dir, name, model.config.hidden_size)
        except PebbleError as e:
            raise PebbleError(f"{name!r} is not loaded (loaded: {', '.join(loaded) or 'none'}) and {e}") from None
        found = load_adapter(model, path)
        enable_fast_paths(model)  # for the layers it adds
    set_active_lora(model, found)
    return found


# ---------------------------------------------------------------- generating

class ReplyStreamer:
    """A streamer for model.generate (put/end protocol) on one conversation: prints the reply to `out` as it
    is decoded, whole characters only and without its leading whitespace, and times it."""

    def __init__(self, tokenizer, out: TextIO):
        self.out = out
        self.text = TextStream(token_bytes(tokenizer))
        self.ids: list[int] = []  # the new tokens so far
        self.started = False  # whether anything but whitespace was printed yet
        self.start: Optional[float] = None
        self.seconds = 0.0

    def put(self, value: torch.Tensor) -> None:
        """Take the prompt (first call), then each new token (1,)."""
        if self.start is None:  # the first call carries the prompt
            self.start = time.perf_counter()
            return
        self.ids.append(int(value[0]))
        self.show(self.text.push(self.ids[-1]))

    def end(self) -> None:
        """Generation is over: stop the clock (the bytes of an unfinished character are dropped)."""
        self.seconds = time.perf_counter() - (self.start or time.perf_counter())
        self.show(self.text.finish())

    def show(self, text: str) -> None:
        """Print newly completed text."""
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        if text:
            self.out.write(text)
            self.out.flush()

    def speed(self) -> str:
        """'N tokens, X tokens/s' for the reply."""
        return f"{len(self.ids)} tokens, {len(self.ids) / max(self.seconds, 1e-9):.1f} tokens/s"


def read_prompts(prompts: list[str], prompts_file: Optional[str]) -> list[str]:
    """The --prompt values followed by the non-empty lines of --prompts_file."""
    if not prompts_file:
        return list(prompts)
    path = repo_path(prompts_file)
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark at the start is not text
            return list(prompts) + [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise PebbleError(f"cannot read {path} ({e.strerror if isinstance(e, OSError) else 'not UTF-8'}); "
                          "--prompts_file wants a UTF-8 text file with one prompt per line") from None


def answer_prompts(model, tokenizer, prompts: list[str], variants: list[tuple[str, ActiveSpec]], gen: GenOptions,
                   batch_size: int) -> list[dict]:
    """[{"prompt", "replies": {label: reply}}] for each prompt, answered by each (label, adapters) variant."""
    conversations = [as_messages(p) for p in prompts]
    by_label = {}
    for label, spec in variants:
        with adapter_active(model, spec):
            by_label[label] = batched_replies(model, tokenizer, conversations, batch_size, gen)
    return [{"prompt": p, "replies": {label: replies[i] for label, replies in by_label.items()}}
            for i, p in enumerate(prompts)]


def format_answer(answer: dict) -> str:
    """One prompt and its replies, one labelled block each, continuation lines indented under the text."""
    width = max(len(label) for label in answer["replies"]) + 2
    lines = [f"you: {answer['prompt']}"]
    for label, reply in answer["replies"].items():
        body = reply.replace("\n", "\n" + " " * width)
        lines.append(f"{label + '>':<{width}}{body}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- chatting

def chat_command(line: str, model, messages: Messages, save_dir: Path, out: TextIO) -> bool:
    """Run one /command; False means the session ends."""
    command, _, arg = line.partition(" ")
    arg = arg.strip()
    if command in ("/exit", "/quit"):
        return False
    if command == "/help":
        print(CHAT_HELP, file=out)
    elif command == "/reset":
        messages.clear()
        print("(history cleared)", file=out)
    elif command == "/lora" and arg in ("", "list"):
        active = active_adapters(model)
        rows = [("base (no adapter)", not active)] + [(n, n in active) for n in adapter_names(model)]
        print("\n".join(f"{'*' if on else ' '} {name}" for name, on in rows), file=out)
    elif command == "/lora":
        name = switch_adapter(model, arg, save_dir)
        print(f"(now answering with {name or 'the base model alone'})", file=out)
    else:
        raise PebbleError(f"unknown command {command}; /help lists the commands")
    return True


def run_chat(model, tokenizer, gen: GenOptions, historys: int, show_speed: bool, save_dir: Path,
             read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> None:
    """Chat until /exit or end of input: streamed replies, the last `historys` messages sent along, /commands.

    A user's mistake prints one `error:` line on stderr and the session goes on; Ctrl-C stops a reply."""
    messages: Messages = []
    print(f"chatting with {active_label(model)}; /help lists the commands, /exit or Ctrl-D leaves", file=out)
    while True:
        try:
            line = read("you: ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return
        if not line:
            continue
        if line.startswith("/"):
            try:
                if not chat_command(line, model, messages, save_dir, out):
                    return
            except PebbleError as e:
                out.flush()
                print(f"error: {e}", file=sys.stderr, flush=True)
            continue
        context = (messages[-historys:] if historys else []) + [{"role": "user", "content": line}]
        print(f"{active_label(model)}> ", end="", file=out, flush=True)
        streamer = ReplyStreamer(tokenizer, out)
        try:
            reply = generate_replies(model, tokenizer, [context], gen.max_new_tokens, gen.temperature, gen.top_p,
                                     streamer=streamer)[0]
        except KeyboardInterrupt:
            print("\n(stopped; this exchange is not kept)", file=out)
            continue
        print(file=out)
        if show_speed:
            print(f"[{streamer.speed()}]", file=out)
        messages[:] = context + [{"role": "assistant", "content": reply}]


# ---------------------------------------------------------------- measuring

def format_eval(report: dict) -> str:
    """The evaluation as a table: one row per variant."""
    results, word = report["results"], report["expect"]
    tokens = next(iter(results.values()))["tokens"]
    head = (f"{report['data']}: {report['conversations']} conversations, {tokens} assistant tokens "
            f"({report['truncated']} conversations truncated to {report['max_seq_len']} tokens)")
    width = max(len(label) for label in results) + 2
    expect = f"  {word!r} in reply" if word else ""
    lines = [head, f"{'':<{width}}{'loss':>8}{'perplexity':>12}{expect}"]
    for label, r in results.items():
        rate = f"{100 * r['expect_rate']:.1f}%".rjust(len(expect)) if word else ""
        lines.append(f"{label:<{width}}{r['loss']:>8.4f}{r['perplexity']:>12.2f}{rate}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the script

def main(argv: Optional[list[str]] = None) -> None:
    """Load the base and adapters, then answer the scripted prompts, evaluate, or chat."""
    args = parse_args(argv)
    # 1. device, precision, tokenizer, and the prompts and data (a bad file fails before the model loads)
    device = resolve_device(args.device)  # one clear line for a device this PyTorch cannot use
    dtype = resolve_dtype(args.dtype, device)
    native = args.load_from == NATIVE  # else a transformers folder with its own tokenizer (and no adapters)
    tokenizer = load_tokenizer(args.tokenizer_path if native else args.load_from)
    prompts = read_prompts(args.prompt, args.prompts_file)
    data = SFTDataset(repo_path(args.eval_data), tokenizer, args.max_seq_len) if args.eval_data else None
    # 2. the base and its adapters (the first one answers)
    save_dir = repo_path(args.save_dir)
    if native:
        model, path = load_base(save_dir, args.weight, args.hidden_size, args.num_hidden_layers, tokenizer, device)
    else:
        model, path = load_transformers(repo_path(args.load_from), tokenizer, device)
    positions = model.config.max_position_embeddings  # the KV cache holds prompt and reply, allocated up front
    if args.max_new_tokens >= positions:
        raise PebbleError(f"--max_new_tokens {args.max_new_tokens} does not fit the model's {positions} positions "
                          f"(prompt included); pass less, e.g. {min(1024, positions // 2)}")
    total, _ = count_parameters(model)
    adapters = [load_adapter(model, adapter_path(save_dir, n, model.config.hidden_size))
                for n in parse_names(args.lora_weight)]
    active = adapters[0] if adapters else None
    set_active_lora(model, active)
    if native:
        enable_fast_paths(model)
    print(f"{path.name}: {total / 1e6:.2f}M parameters, {model.config.num_hidden_layers} layers; adapters: "
          f"{', '.join(adapters) or 'none'}; {device}, {str(dtype).removeprefix('torch.')}", file=sys.stderr)
    gen = GenOptions(args.max_new_tokens, args.temperature, args.top_p)
    report: dict = {}
    with autocast(device, dtype):
        # 3. scripted prompts: the active adapter, or (--compare) the base and every adapter
        if prompts:
            variants = every_variant(model) if args.compare else [(active or "base", active)]
            report["answers"] = answer_prompts(model, tokenizer, prompts, variants, gen, args.batch_size)
            if not args.json:
                print("\n".join(format_answer(a) for a in report["answers"]))
        # 4. evaluation of the base and every adapter
        if data is not None:
            report["eval"] = {"data": args.eval_data, "conversations": len(data), "truncated": data.num_truncated,
                              "max_seq_len": args.max_seq_len, "expect": args.expect,
                              "results": evaluate(model, tokenizer, data, every_variant(model), args.expect,
                                                  args.batch_size)}
            if not args.json:
                print(format_eval(report["eval"]))
        # 5. machine-readable output, or the chat when nothing was scripted
        if args.json:
            print(json.dumps(report, ensure_ascii=False))
        elif not prompts and data is None:
            run_chat(model, tokenizer, gen, args.historys, bool(args.show_speed), save_dir)


if __name__ == "__main__":
    run_cli(main)
