#!/usr/bin/env python3
"""The everyday-chat table: load and validate it, and turn it into single-exchange SFT conversations.

``dataset/tables/everyday_chat.jsonl`` holds one *intent* per line, written for this project::

    {"intent": "boil_eggs", "lang": "zh", "prompts": ["...", ...], "replies": ["...", ...]}

``prompts`` are 5-8 different user wordings of the same request and ``replies`` 2-4 different good answers to
it. ``conversations`` pairs every prompt with one reply drawn by a seeded generator. Standard library only.

    python dataset/everyday_chat.py            # validate the table and print the counts per language
    python dataset/everyday_chat.py other.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "tables" / "everyday_chat.jsonl"
LANGS = ("zh", "en")
FIELDS = ("intent", "lang", "prompts", "replies")
PROMPTS_RANGE = (5, 8)
REPLIES_RANGE = (2, 4)
MAX_ZH_CHARS = 60
MAX_EN_WORDS = 45
MAX_SENTENCES = 3

INTENT_NAME = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
CJK = re.compile(r"[\u3400-\u9fff]")
# The assistant just helps: a reply never speaks of itself, its name, its maker or being a program.
SELF_REFERENCE = [
    re.compile(r"\bI(?:'|’)m\b|\bI am\b|\bmy name\b|\bas an? (?:AI|assistant|model)\b|\bassistant\b|\bchatbot\b"
               r"|\blanguage model\b|\bPebble\b|\bNova\b|\bStarlight Lab\b", re.IGNORECASE),
    re.compile(r"\bAI\b|\bA\.I\.|我是|我叫|模型|助手|人工智能|本机器人"),
]
EMOJI = re.compile("[\u2600-\u27bf\u2b50\u2b55\ufe0f\U0001f000-\U0001faff]")
URL = re.compile(r"https?://|www\.|\b[\w-]+\.(?:com|org|net|cn|io)\b", re.IGNORECASE)
ZH_SENTENCE_END = re.compile(r"[。！？!?]+")
EN_SENTENCE_END = re.compile(r"[.!?]+(?:[\"')]*)(?=\s|$)")


class TableError(ValueError):
    """A line of the everyday-chat table breaks a rule; the message names the file and line."""


def prompt_key(prompt: str) -> str:
    """Prompts that differ only in case, width, spaces or punctuation count as the same prompt."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", prompt).casefold() if ch.isalnum())


def sentence_count(text: str, lang: str) -> int:
    pattern = ZH_SENTENCE_END if lang == "zh" else EN_SENTENCE_END
    return len([part for part in pattern.split(text) if part.strip(" \"'“”‘’)）")])


def text_problem(text: object, lang: str, what: str) -> str | None:
    """What is wrong with one prompt or reply in the given language, or None."""
    if not isinstance(text, str) or not text.strip():
        return f"{what} must be a non-empty string"
    if text != text.strip() or "\n" in text:
        return f"{what} has leading/trailing space or a line break: {text!r}"
    if not prompt_key(text):
        return f"{what} has no letters or digits: {text!r}"
    if lang == "zh" and not CJK.search(text):
        return f"{what} is not Chinese: {text!r}"
    if lang == "en" and (CJK.search(text) or not re.search(r"[A-Za-z]", text)):
        return f"{what} is not English: {text!r}"
    if EMOJI.search(text):
        return f"{what} contains an emoji: {text!r}"
    if URL.search(text):
        return f"{what} contains a URL: {text!r}"
    return None


def reply_problem(reply: str, lang: str) -> str | None:
    """Rules that only replies follow: length, sentence count and no self-reference."""
    for pattern in SELF_REFERENCE:
        hit = pattern.search(reply)
        if hit:
            return f"reply refers to itself ({hit.group(0)!r}): {reply!r}"
    if lang == "zh" and len(reply) > MAX_ZH_CHARS:
        return f"reply has {len(reply)} characters (max {MAX_ZH_CHARS}): {reply!r}"
    if lang == "en" and len(reply.split()) > MAX_EN_WORDS:
        return f"reply has {len(reply.split())} words (max {MAX_EN_WORDS}): {reply!r}"
    sentences = sentence_count(reply, lang)
    if sentences > MAX_SENTENCES:
        return f"reply has {sentences} sentences (max {MAX_SENTENCES}): {reply!r}"
    return None


def intent_problem(obj: object) -> str | None:
    """What is wrong with one parsed line taken on its own, or None."""
    if not isinstance(obj, dict):
        return "line is not a JSON object"
    if sorted(obj) != sorted(FIELDS):
        return f"fields must be exactly {', '.join(FIELDS)}; got {', '.join(sorted(obj)) or 'none'}"
    if not isinstance(obj["intent"], str) or not INTENT_NAME.fullmatch(obj["intent"]):
        return f"intent must be a snake_case name, got {obj['intent']!r}"
    lang = obj["lang"]
    if lang not in LANGS:
        return f"lang must be one of {', '.join(LANGS)}, got {lang!r}"
    for field, (low, high) in (("prompts", PROMPTS_RANGE), ("replies", REPLIES_RANGE)):
        items = obj[field]
        if not isinstance(items, list) or not low <= len(items) <= high:
            count = len(items) if isinstance(items, list) else "not a list"
            return f"{field} must be a list of {low}-{high} strings (got {count})"
        what = field[:-1] if field == "prompts" else "reply"
        for item in items:
            problem = text_problem(item, lang, what)
            if problem:
                return problem
        if len({prompt_key(item) for item in items}) != len(items):
            return f"{field} repeat themselves within the intent"
    for reply in obj["replies"]:
        problem = reply_problem(reply, lang)
        if problem:
            return problem
    return None


def decode_line(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise TableError(f"{where}: not valid JSON ({exc.msg})") from None


def parse_intents(lines: Iterable[str], source: str = "<lines>") -> list[dict]:
    """Validate JSON lines of the table and return the intents; raise TableError naming the first bad line."""
    intents: list[dict] = []
    seen_prompts: dict[str, int] = {}
    seen_intents: dict[tuple[str, str], int] = {}
    numbered = ((lineno, line) for lineno, line in enumerate(lines, start=1) if line.strip())
    for lineno, line in numbered:
        obj = decode_line(line, f"{source}, line {lineno}")
        problem = intent_problem(obj)
        name = (obj["lang"], obj["intent"]) if problem is None else None
        if name in seen_intents:
            problem = f"intent {obj['intent']!r} ({obj['lang']}) already on line {seen_intents[name]}"
        if problem is None:
            for prompt in obj["prompts"]:
                earlier = seen_prompts.get(prompt_key(prompt))
                if earlier is not None:
                    problem = f"duplicate prompt {prompt!r} (already on line {earlier})"
                    break
        if problem:
            raise TableError(f"{source}, line {lineno}: {problem}")
        seen_intents[name] = lineno
        seen_prompts.update((prompt_key(prompt), lineno) for prompt in obj["prompts"])
        intents.append(obj)
    return intents


def load_intents(path: str | Path = DEFAULT_PATH) -> list[dict]:
    """Read and validate the table at ``path``; raise TableError naming the first bad line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        return parse_intents(handle, source=str(path))


def conversations(intents: Iterable[dict], rng: random.Random) -> list[dict]:
    """One single-exchange chat per prompt, in table order, each answered by a reply that ``rng`` picks."""
    return [
        {"conversations": [{"role": "user", "content": prompt},
                           {"role": "assistant", "content": rng.choice(intent["replies"])}]}
        for intent in intents
        for prompt in intent["prompts"]
    ]


def counts(intents: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Intents, prompts and replies per language."""
    table = {lang: {"intents": 0, "prompts": 0, "replies": 0} for lang in LANGS}
    for intent in intents:
        row = table[intent["lang"]]
        row["intents"] += 1
        row["prompts"] += len(intent["prompts"])
        row["replies"] += len(intent["replies"])
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate the everyday-chat table and print its counts.")
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH), help="table to read (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        intents = load_intents(args.path)
    except (OSError, TableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    table = counts(intents)
    print(f"{'lang':<6}{'intents':>9}{'prompts':>9}{'replies':>9}")
    for lang, row in table.items():
        print(f"{lang:<6}{row['intents']:>9}{row['prompts']:>9}{row['replies']:>9}")
    total = {key: sum(row[key] for row in table.values()) for key in ("intents", "prompts", "replies")}
    print(f"{'all':<6}{total['intents']:>9}{total['prompts']:>9}{total['replies']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
