"""Measure the chat base: held-out loss, how often a reply ends with <|im_end|>, and sample answers.

    python scripts/measure_base.py                 # out/full_sft_256 on dataset/sft_demo_eval.jsonl
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.lm_dataset import SFTDataset
from model.chat import encode_prompt, generate_tokens, reply, token_bytes
from model.checkpoint import load_model
from model.common import repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import load_tokenizer, weight_path
from trainer.config import base_model_parser
from trainer.evaluation import assistant_token_loss, first_user_turns
from trainer.runtime import autocast, resolve_dtype

SAMPLE_PROMPTS = ["你好，你是谁？", "Who are you?", "法国的首都是哪里？", "What is 7 times 8?", "“苹果”用英语怎么说？",
                  "Tell me a joke.", "这条评论是正面还是负面？\n房间干净，服务也很热情。"]


def eos_rate(model, tokenizer, conversations: list, max_new_tokens: int, batch_size: int = 32) -> float:
    """Share of greedy replies that emit <|im_end|> within max_new_tokens."""
    ended, table = 0, token_bytes(tokenizer)
    for start in range(0, len(conversations), batch_size):
        prompts = [encode_prompt(tokenizer, c) for c in conversations[start:start + batch_size]]
        new = generate_tokens(model, prompts, max_new_tokens, eos_token_id=tokenizer.eos_token_id, token_table=table)
        ended += int((new == tokenizer.eos_token_id).any(dim=1).sum())
    return ended / len(conversations)


def main() -> None:
    parser = base_model_parser(__doc__)
    parser.add_argument("--eval_data", default="dataset/sft_demo_eval.jsonl")
    parser.add_argument("--max_new_tokens", type=int, default=128)
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.tokenizer_path)
    path = weight_path(repo_path(args.save_dir), args.weight, args.hidden_size)
    model = load_model(path).eval()
    enable_fast_paths(model)
    data = SFTDataset(repo_path(args.eval_data), tokenizer, 340)
    with autocast("cpu", resolve_dtype("auto", "cpu")):
        loss, tokens = assistant_token_loss(model, data)
        rate = eos_rate(model, tokenizer, first_user_turns(data.path), args.max_new_tokens)
        answers = [(p, reply(model, tokenizer, p, max_new_tokens=64)) for p in SAMPLE_PROMPTS]
    print(f"{path.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    print(f"held-out loss on {args.eval_data}: {loss:.3f} (perplexity {math.exp(loss):.2f}, {tokens} assistant tokens)")
    print(f"greedy replies that end with <|im_end|> within {args.max_new_tokens} tokens: {100 * rate:.1f}% "
          f"of {len(data)} held-out prompts")
    for p, a in answers:
        print(f"| {p!r} | {a} |")


if __name__ == "__main__":
    run_cli(main)
