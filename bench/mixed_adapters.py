"""Serving requests for different adapters: one mixed-adapter batch vs one batch per adapter vs one at a time.

    python bench/mixed_adapters.py                    # N = 8 and 16 requests on out/full_sft_256 + both adapters
    python bench/mixed_adapters.py --sizes 4 --repeats 1   # a quick look

N requests cycle through lora_identity, lora_medical and the base alone; each decodes exactly --new_tokens
tokens (greedy, eos_token_id=-1, so every arm makes the same number). The arms:
- mixed: all N in one left-padded generate, each row with its own adapter (adapters_per_row);
- grouped: one generate per adapter (three batches), with that adapter active;
- one at a time: N generates of one request each.
Arms run interleaved (bench/common.interleave) after a warm-up round; figures are medians. The last column says
whether the mixed batch produced the same tokens as the grouped batches.
"""
import os
import sys
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from bench.common import OtherLoad, encode_prompts, interleave, machine_line, median, spread
from model.chat import generate_tokens
from model.common import repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import adapter_path, load_adapter, load_base, load_tokenizer
from model.model_lora import adapter_active
from trainer.config import add_device_flags, base_model_parser
from trainer.runtime import autocast, resolve_device, resolve_dtype

ADAPTERS = ("lora_identity", "lora_medical", None)  # None: the base alone


def arms(model, prompts: list[list[int]], names: list[Optional[str]],
         new_tokens: int) -> dict[str, Callable[[], torch.Tensor]]:
    """The three ways to serve the requests, each returning the new tokens (N, new_tokens) in request order."""
    def generate(rows: list[int], adapters: Optional[list[Optional[str]]] = None) -> torch.Tensor:
        return generate_tokens(model, [prompts[i] for i in rows], new_tokens, eos_token_id=-1, adapters=adapters)

    def mixed() -> torch.Tensor:
        return generate(list(range(len(prompts))), adapters=names)

    def grouped() -> torch.Tensor:
        out = torch.empty(len(prompts), new_tokens, dtype=torch.long)
        for name in dict.fromkeys(names):
            rows = [i for i, n in enumerate(names) if n == name]
            with adapter_active(model, name):
                out[rows] = generate(rows)
        return out

    def one_at_a_time() -> torch.Tensor:
        out = torch.empty(len(prompts), new_tokens, dtype=torch.long)
        for i, name in enumerate(names):
            with adapter_active(model, name):
                out[i] = generate([i])[0]
        return out

    return {"mixed batch": mixed, "one batch per adapter": grouped, "one request at a time": one_at_a_time}


def main() -> None:
    """Time the three arms for each --sizes and print one markdown row per arm."""
    parser = base_model_parser(__doc__)
    parser.add_argument("--sizes", default="8,16", help="numbers of requests, comma-separated (default: 8,16)")
    parser.add_argument("--new_tokens", type=int, default=64, help="tokens decoded per request (default: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (default: 3)")
    add_device_flags(parser)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads; 0 keeps torch's default, 1 is steadier on a shared machine (default: 0)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.tokenizer_path)
    save_dir = repo_path(args.save_dir)
    device = resolve_device(args.device)
    model, base_path = load_base(save_dir, args.weight, args.hidden_size, 0, tokenizer, device)
    for name in ADAPTERS[:-1]:
        load_adapter(model, adapter_path(save_dir, name, args.hidden_size))
    enable_fast_paths(model)  # as the server does
    dtype = resolve_dtype(args.dtype, device)
    print(machine_line(dtype))
    print(f"base {base_path.name} with {', '.join(n for n in ADAPTERS if n)}; {args.new_tokens} new tokens per "
          f"request, greedy, eos disabled; median of {args.repeats} interleaved rounds after 1 warm-up\n")
    print("| requests | arm | wall s | tokens/s | vs one at a time | noise (IQR/median) | same tokens as grouped |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    load = OtherLoad()
    for n in [int(s) for s in args.sizes.split(",")]:
        prompts = encode_prompts(tokenizer, n)
        names = [ADAPTERS[i % len(ADAPTERS)] for i in range(n)]
        calls = arms(model, prompts, names, args.new_tokens)
        with autocast(device, dtype):
            same = int((calls["mixed batch"]() == calls["one batch per adapter"]()).all(dim=1).sum())
            times = interleave(calls, args.repeats)
        alone = median(times["one request at a time"])
        for arm, ts in times.items():
            t = median(ts)
            check = f"{same}/{n} rows" if arm == "mixed batch" else ""
            print(f"| {n} | {arm} | {t:.2f} | {n * args.new_tokens / t:.0f} | {alone / t:.2f}x | "
                  f"{spread(ts):.2f} | {check} |", flush=True)
    print(f"\nother processes kept {100 * load.share():.0f}% of the CPU busy during the run")


if __name__ == "__main__":
    run_cli(main)
