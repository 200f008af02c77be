"""Assemble the base model's training data: one pretraining file and one SFT file under dataset/corpus/.

    python dataset/build_base_data.py          # after dataset/build_corpus.py (scripts/get_corpus_sources.sh)

Pretraining (`pretrain_base.jsonl`, {"text"}): natural text sampled from the offline corpus
(dataset/corpus/pretrain_corpus.jsonl, --corpus_tokens of it), the committed demo corpus
(dataset/pretrain_demo.jsonl), paragraphs of simple facts in many wordings (dataset/knowledge.py) and the
everyday-chat table written out as questions and answers.

SFT (`sft_base.jsonl`, {"conversations"}): the committed demo conversations (dataset/sft_demo.jsonl), fact
questions in many wordings, every everyday-chat prompt answered by each of its replies in turn
(--everyday_copies times), and with --health_conversations everyday health questions (dataset/health_facts.py). dataset/replay_chat.jsonl (committed), which LoRA training replays, takes
--replay_size of them: each everyday prompt once, the rest from the other conversations.

No user prompt of a held-out set (dataset/heldout/*.jsonl, dataset/*_eval.jsonl) is written, compared after
lower-casing and dropping everything but letters and digits. Seeded: the same inputs give the same files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for dataset.data_io
from dataset.data_io import heldout_set_prompts, write_jsonl  # noqa: E402
from everyday_chat import load_intents, prompt_key  # noqa: E402
from health_facts import health_conversations  # noqa: E402
from knowledge import fact_conversations, fact_paragraph, load_tables  # noqa: E402

DATASET = Path(__file__).resolve().parent
REPO = DATASET.parent


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def held_out_prompts() -> list[str]:
    """Every prompt that evaluation uses: the held-out sets and the opening prompts of the demo eval sets."""
    prompts = heldout_set_prompts()
    for path in sorted(DATASET.glob("*_eval.jsonl")):
        prompts += [first_prompt(row) for row in read_jsonl(path)]
    return prompts


def held_out_keys() -> set[str]:
    """The held-out prompts compared loosely (case, spaces and punctuation ignored)."""
    return {prompt_key(p) for p in held_out_prompts()}


def first_prompt(row: dict) -> str:
    return next(turn["content"] for turn in row["conversations"] if turn["role"] == "user")


def everyday_text(intents: list[dict], rng: random.Random, banned: set[str]) -> list[str]:
    """Each intent as a few written-out exchanges, for the pretraining file (no banned prompt)."""
    texts = []
    for intent in intents:
        q, a = ("Q: ", "A: ") if intent["lang"] == "en" else ("问：", "答：")
        allowed = [p for p in intent["prompts"] if prompt_key(p) not in banned]
        prompts = rng.sample(allowed, min(3, len(allowed)))
        texts.append("\n".join(f"{q}{p}\n{a}{rng.choice(intent['replies'])}" for p in prompts))
    return texts


def everyday_conversations(intents: list[dict]) -> list[dict]:
    """Every prompt once with each reply of its intent, the replies rotated so each pairing is different."""
    rows = []
    for intent in intents:
        replies = intent["replies"]
        for i, prompt in enumerate(intent["prompts"]):
            for j in range(len(replies)):
                rows.append({"conversations": [{"role": "user", "content": prompt},
                                               {"role": "assistant", "content": replies[(i + j) % len(replies)]}]})
    return rows


def replay_sample(sft: list[dict], everyday_prompts: set[str], size: int) -> list[dict]:
    """The first SFT conversation of each everyday prompt, then other conversations up to size rows."""
    everyday, others, seen = [], [], set()
    for row in sft:
        prompt = first_prompt(row)
        if prompt not in everyday_prompts:
            others.append(row)
        elif prompt not in seen:
            seen.add(prompt)
            everyday.append(row)
    return everyday + others[:max(0, size - len(everyday))]


def corpus_sample(path: Path, tokens: int, tokenizer: Tokenizer, rng: random.Random) -> list[str]:
    """Random samples of the offline corpus adding up to about `tokens` tokens."""
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; build it first with: bash scripts/get_corpus_sources.sh")
    texts = [row["text"] for row in read_jsonl(path)]
    rng.shuffle(texts)
    picked, total = [], 0
    for start in range(0, len(texts), 4096):
        chunk = texts[start:start + 4096]
        for text, enc in zip(chunk, tokenizer.encode_batch(chunk, add_special_tokens=False)):
            if total >= tokens:
                return picked
            picked.append(text)
            total += len(enc.ids)
    return picked


def token_count(texts: list[str], tokenizer: Tokenizer) -> int:
    return sum(len(e.ids) for i in range(0, len(texts), 4096)
               for e in tokenizer.encode_batch(texts[i:i + 4096], add_special_tokens=False))


def write_checked(path: Path, rows: list[dict]) -> str:
    """data_io.write_jsonl (every row checked with the loader's rule), then the file's short sha256."""
    write_jsonl(path, rows)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(DATASET / "corpus" / "pretrain_corpus.jsonl"))
    parser.add_argument("--out_dir", default=str(DATASET / "corpus"))
    parser.add_argument("--corpus_tokens", type=int, default=9_000_000, help="natural text to take from --corpus")
    parser.add_argument("--fact_paragraphs", type=int, default=20_000, help="pretraining paragraphs of facts")
    parser.add_argument("--fact_conversations", type=int, default=60_000, help="SFT fact questions")
    parser.add_argument("--health_conversations", type=int, default=0,
                        help="SFT questions on which doctor, self-care and emergencies (dataset/health_facts.py); "
                             "the shipped base has none (dataset/README.md says what 6,000 did)")
    parser.add_argument("--everyday_text_copies", type=int, default=3, help="passes over the table as text")
    parser.add_argument("--everyday_copies", type=int, default=4,
                        help="copies of the everyday conversations in the SFT file (their replies are long and varied: "
                             "one copy left the base answering them with garbled text)")
    parser.add_argument("--replay_out", default=str(DATASET / "replay_chat.jsonl"),
                        help="where to write the replay sample for LoRA training ('' for none)")
    parser.add_argument("--replay_size", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tokenizer = Tokenizer.from_file(str(REPO / "model" / "tokenizer.json"))
    tables, intents, banned = load_tables(), load_intents(), held_out_keys()

    def held_out(question: str) -> bool:
        return prompt_key(question) in banned
    out_dir = Path(args.out_dir)

    parts = {
        "offline corpus": corpus_sample(Path(args.corpus), args.corpus_tokens, tokenizer, rng),
        "demo corpus": [row["text"] for row in read_jsonl(DATASET / "pretrain_demo.jsonl")],
        "fact paragraphs": [fact_paragraph(rng, tables, rng.randint(5, 12), held_out)
                            for _ in range(args.fact_paragraphs)],
        "everyday chat": [t for _ in range(args.everyday_text_copies) for t in everyday_text(intents, rng, banned)],
    }
    verbatim = [p for p in held_out_prompts() if len(p) >= 8]
    pretrain = [{"text": t} for texts in parts.values() for t in texts if not any(p in t for p in verbatim)]
    rng.shuffle(pretrain)
    print("pretraining text:")
    for name, texts in parts.items():
        print(f"  {name:16s} {len(texts):7d} samples {token_count(texts, tokenizer) / 1e6:6.2f}M tokens")

    rng = random.Random(args.seed + 1)  # the SFT file does not depend on the pretraining options
    demo = read_jsonl(DATASET / "sft_demo.jsonl")
    demo_prompts = {first_prompt(row) for row in demo}
    sft_parts = {
        "demo chat": demo,
        "facts": fact_conversations(rng, args.fact_conversations, tables,
                                    lambda q: held_out(q) or q in demo_prompts),
        "everyday chat": everyday_conversations(intents) * args.everyday_copies,
    }
    sft, dropped = [], 0
    for rows in sft_parts.values():
        for row in rows:
            if any(prompt_key(t["content"]) in banned for t in row["conversations"] if t["role"] == "user"):
                dropped += 1
            else:
                sft.append(row)
    rng.shuffle(sft)
    print("SFT conversations:")
    for name, rows in sft_parts.items():
        print(f"  {name:16s} {len(rows):7d}")
    print(f"  dropped {dropped} that hold a held-out prompt")

    # The health questions go in at random places after the shuffle, from their own seed, so that the rest of
    # the file and the replay sample below are the same with or without them.
    health_rng = random.Random(args.seed + 2)
    health = health_conversations(health_rng, args.health_conversations,
                                  avoid=lambda q: held_out(q) or q in demo_prompts)
    print(f"  {'health':16s} {len(health):7d}")
    full_sft = list(sft)
    for row in health:
        full_sft.insert(health_rng.randrange(len(full_sft) + 1), row)

    for name, rows in (("pretrain_base.jsonl", pretrain), ("sft_base.jsonl", full_sft)):
        print(f"wrote {out_dir / name}: {len(rows)} rows, sha256 {write_checked(out_dir / name, rows)}")
    if args.replay_out:
        # A committed sample of the SFT mix that LoRA training replays to keep the base's own answers: every
        # everyday prompt once (an adapter must leave everyday requests alone, and they are the most varied part),
        # the rest of --replay_size from the other conversations in the SFT file's order.
        replay = replay_sample(sft, {p for intent in intents for p in intent["prompts"]}, args.replay_size)
        rng.shuffle(replay)
        print(f"wrote {args.replay_out}: {len(replay)} rows, sha256 {write_checked(Path(args.replay_out), replay)}")


if __name__ == "__main__":
    main()
