"""Measure what a person sees: greedy answers of the base and of each adapter to prompts no training file holds.

    python scripts/measure_answers.py                                   # full_sft + lora_identity, lora_medical
    python scripts/measure_answers.py --sets identity,unrelated --json answers.json

The prompts are in dataset/heldout/SET.jsonl, one {"prompt": ...} per line; facts and health lines also carry
"accept", a list of keywords of which a good answer contains at least one (a whole word or number: "7" is not
found in "17", "七" not in "十七"), and sums "last_number": true, where the keyword must be the answer's last
number. Measures, one row each:

- facts: answers holding an accepted keyword (the sum, the capital, the colour, the word);
- health: answers naming a sensible department or self-care step for the complaint;
- identity: answers to "who are you" in new wordings that name the persona (--persona, default Nova);
- unrelated: answers to everyday requests that name the persona or its maker (leakage; lower is better);
- broken text: answers whose generated ids decode to U+FFFD (an invalid or unfinished UTF-8 byte sequence);
- cut off: answers that reach --max_new_tokens without ending.

Before generating, every prompt is checked against the user turns of DATA_DIR/*.jsonl: a prompt that occurs
there, exactly or after normalising (lower case, letters and digits only), is an error.
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.chat import generate_replies
from model.checkpoint import load_model
from model.common import PebbleError, repo_path, run_cli
from model.loading import adapter_path, load_adapter, load_tokenizer, parse_names, weight_path
from model.model_lora import adapter_active
from trainer.config import base_model_parser
from trainer.evaluation import as_messages
from trainer.runtime import autocast, resolve_dtype

SETS = ("facts", "health", "identity", "unrelated")
KEYWORD_SETS = ("facts", "health")  # sets whose lines carry "accept"
# Characters that continue a number or word: a keyword must not be glued to one of its own kind, so "7" is not
# found in "17" and "七" not in "十七", while "7" in "等于7。" and "Paris" in "是Paris，" are.
ASCII_WORD = re.compile(r"[0-9a-z]")
ZH_NUMERAL = re.compile(r"[零一二三四五六七八九十百千两]")
NUMBER = re.compile(r"[0-9零一二三四五六七八九十百千两]")


def normalise(text: str) -> str:
    """Lower case, letters and digits only: '5 乘以 6 等于多少？' and '5乘以6等于多少' compare equal."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def read_set(path: Path, needs_accept: bool) -> list[dict]:
    """The lines of a held-out prompt file as dicts with "prompt" (and "accept" where needed)."""
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PebbleError(f"cannot read {path} ({e}); it should be UTF-8 JSONL with one {{\"prompt\": ...}} "
                          "per line") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise PebbleError(f"{path} line {n} is not JSON; fix or remove it") from None
        accept = item.get("accept")
        ok = isinstance(item.get("prompt"), str) and normalise(item["prompt"]) and \
            isinstance(item.get("last_number", False), bool)
        if needs_accept:
            ok = ok and isinstance(accept, list) and accept and all(isinstance(k, str) and k.strip() for k in accept)
        if not ok:
            want = '{"prompt": "...", "accept": ["keyword", ...]}' if needs_accept else '{"prompt": "..."}'
            raise PebbleError(f"{path} line {n} should look like {want} with a non-empty prompt")
        items.append(item)
    if not items:
        raise PebbleError(f"{path} holds no prompts")
    return items


def training_prompts(data_dir: Path) -> dict[str, str]:
    """{normalised user turn: the turn} over every conversation file DATA_DIR/*.jsonl."""
    seen: dict[str, str] = {}
    for path in sorted(data_dir.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                for t in json.loads(line).get("conversations", ()) if line.strip() else ():
                    if t["role"] == "user":
                        seen.setdefault(normalise(t["content"]), t["content"])
    if not seen:
        raise PebbleError(f"{data_dir} holds no conversation files to check the held-out prompts against")
    return seen


def seen_prompts(prompts: list[str], training: dict[str, str]) -> list[str]:
    """The prompts that a training file holds, exactly or once normalised (an exact match normalises equal)."""
    return [p for p in prompts if normalise(p) in training]


def contains_keyword(answer: str, keyword: str, last_number: bool = False) -> bool:
    """Whether answer holds keyword (ignoring case) not glued to a letter, digit or numeral of its own kind; with
    last_number, only where no digit or Chinese numeral follows (so '7加10等于12' does not answer 3 + 4)."""
    text, key = answer.lower(), keyword.lower().strip()
    for m in re.finditer(re.escape(key), text):
        before, after = text[m.start() - 1:m.start()], text[m.end():m.end() + 1]
        if any(kind.match(key[0]) and kind.match(before) or kind.match(key[-1]) and kind.match(after)
               for kind in (ASCII_WORD, ZH_NUMERAL)):
            continue
        if not (last_number and NUMBER.search(text, m.end())):
            return True
    return False


def is_broken(tokenizer, ids: list[int]) -> bool:
    """Whether generated ids decode to broken text: U+FFFD marks bytes that are not (or not yet) UTF-8."""
    return "\ufffd" in tokenizer.decode(ids, skip_special_tokens=True)


class TokenColumns:
    """A streamer for generate_replies (put/end protocol) that keeps each new (B,) column of token ids."""

    def __init__(self):
        self.columns: list[torch.Tensor] = []

    def put(self, value: torch.Tensor) -> None:
        """Keep a new column; the first call carries the prompts (B, T) and is skipped."""
        if value.dim() == 1:
            self.columns.append(value)

    def end(self) -> None:
        """Nothing to finish."""

    def rows(self) -> list[list[int]]:
        """The new token ids of each row."""
        return torch.stack(self.columns, dim=1).tolist() if self.columns else []  # (B, new)


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[dict]:
    """{"answer", "ids", "ended"} per prompt: generate_replies' greedy answer with the active adapters, the
    token ids before eos and whether eos came; batch_size prompts at a time, grouped by length to pad little."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[dict] = [{} for _ in prompts]
    eos = tokenizer.eos_token_id
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        columns = TokenColumns()
        answers = generate_replies(model, tokenizer, [as_messages(prompts[i]) for i in batch], max_new_tokens,
                                   streamer=columns)
        for i, answer, row in zip(batch, answers, columns.rows()):
            ended = eos in row
            out[i] = {"answer": answer, "ids": row[:row.index(eos)] if ended else row, "ended": ended}
    return out


def judge(set_name: str, item: dict, answer: str, persona: str, maker: str) -> bool:
    """Whether an answer counts for its set's measure (for unrelated: whether it leaks the persona)."""
    if set_name in KEYWORD_SETS:
        return any(contains_keyword(answer, k, item.get("last_number", False)) for k in item["accept"])
    if set_name == "identity":
        return contains_keyword(answer, persona)
    return contains_keyword(answer, persona) or contains_keyword(answer, maker)


def measure(model, tokenizer, sets: dict[str, list[dict]], variants: list[tuple[str, Optional[str]]],
            dtype: torch.dtype, args: argparse.Namespace) -> list[dict]:
    """One record per prompt: its set, prompt, accepted keywords, and per variant the answer and its verdicts."""
    flat = [(name, item) for name, items in sets.items() for item in items]
    records = [{"set": name, **item, "answers": {}} for name, item in flat]
    with autocast("cpu", dtype):
        for label, adapter in variants:
            with adapter_active(model, adapter):
                results = generate(model, tokenizer, [item["prompt"] for _, item in flat], args.max_new_tokens,
                                   args.batch_size)
            for record, (name, item), r in zip(records, flat, results):
                record["answers"][label] = {"answer": r["answer"],
                                            "hit": judge(name, item, r["answer"], args.persona, args.maker),
                                            "broken": is_broken(tokenizer, r["ids"]), "ended": r["ended"]}
    return records


def table(records: list[dict], labels: list[str], args: argparse.Namespace) -> str:
    """Markdown: one row per measure, one column per variant, cells like '12/40 (30%)'."""
    what = {"facts": "facts and sums: an accepted answer",
            "health": "health: a sensible department or self-care step",
            "identity": f"identity questions: names {args.persona}",
            "unrelated": f"unrelated questions: names {args.persona} or {args.maker} (leakage)"}
    rows = []  # (title, records counted, what counts)
    for name in SETS:
        chosen = [r for r in records if r["set"] == name]
        if chosen:
            rows.append((f"{what[name]} ({len(chosen)} prompts)", chosen, lambda a: a["hit"]))
    rows += [("broken text (U+FFFD), all answers", records, lambda a: a["broken"]),
             (f"cut off at {args.max_new_tokens} tokens, all answers", records, lambda a: not a["ended"])]
    lines = ["| measure | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for title, chosen, counts in rows:
        hits = [sum(counts(r["answers"][label]) for r in chosen) for label in labels]
        lines.append(f"| {title} | " + " | ".join(f"{h}/{len(chosen)} ({100 * h / len(chosen):.0f}%)" for h in hits)
                     + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = base_model_parser(__doc__)
    parser.add_argument("--adapters", default="lora_identity,lora_medical",
                        help="comma-separated adapters in SAVE_DIR/lora/ to compare with the base ('' for none)")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--heldout_dir", default="dataset/heldout", help="where SET.jsonl are")
    parser.add_argument("--data_dir", default="dataset", help="the training files (*.jsonl) the prompts must avoid")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: an 8M model gains little from more, and a busy CPU "
                        "stalls every op of a multi-threaded run)")
    parser.add_argument("--persona", default="Nova")
    parser.add_argument("--maker", default="Starlight")
    parser.add_argument("--json", metavar="OUT", help="also write every prompt and answer to OUT")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)

    # 1. the prompt sets, none of them in a training file
    names = parse_names(args.sets)
    unknown = [n for n in names if n not in SETS]
    if unknown or not names:
        raise PebbleError(f"--sets {args.sets!r}: choose from {', '.join(SETS)}")
    heldout = repo_path(args.heldout_dir)
    sets = {n: read_set(heldout / f"{n}.jsonl", n in KEYWORD_SETS) for n in SETS if n in names}
    training = training_prompts(repo_path(args.data_dir))
    seen = seen_prompts([item["prompt"] for items in sets.values() for item in items], training)
    if seen:
        raise PebbleError(f"{len(seen)} held-out prompts occur in {args.data_dir}/*.jsonl (e.g. {seen[0]!r}); "
                          f"reword them in {heldout}")

    # 2. the base and its adapters
    tokenizer = load_tokenizer(args.tokenizer_path)
    save_dir = repo_path(args.save_dir)
    model = load_model(weight_path(save_dir, args.weight, args.hidden_size)).eval()
    adapters = [load_adapter(model, adapter_path(save_dir, n, args.hidden_size)) for n in parse_names(args.adapters)]
    variants = [("base", None)] + [(a, a) for a in adapters]

    # 3. answers and the table
    dtype = resolve_dtype(args.dtype, "cpu")
    records = measure(model, tokenizer, sets, variants, dtype, args)
    labels = [label for label, _ in variants]
    print(table(records, labels, args))
    seconds = time.perf_counter() - start
    print(f"\n{len(records)} prompts x {len(labels)} models, greedy, max_new_tokens {args.max_new_tokens}, "
          f"{dtype}: {seconds:.0f} s")
    if args.json:
        report = {"weight": args.weight, "adapters": adapters, "max_new_tokens": args.max_new_tokens,
                  "seconds": round(seconds, 1), "prompts": records}
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_cli(main)
