"""Everyday health knowledge for the base's SFT mix: which doctor sees which complaint, a first self-care step,
and which signs mean an emergency, in English and Chinese, in many wordings.

The table is dataset/tables/health_facts.json. It gives the base the words people use for common complaints
(嗓子疼, a blocked ear, 脚崴了) and ties them to a department; the medical demo adapter then teaches the
assistant's manner on top: a department first, care steps, when to go to the emergency department, no
diagnosis and no doses.

    python dataset/health_facts.py 5          # print five conversations
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Callable

TABLE = Path(__file__).resolve().parent / "tables" / "health_facts.json"


def load_table(path: Path = TABLE) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def health_pair(rng: random.Random, lang: str, table: dict) -> tuple[str, str]:
    """One question and its answer: the doctor for a complaint or a body part, a self-care step, or an
    emergency sign."""
    w = table["wordings"][lang]
    kind = rng.choices(("doctor", "part", "care", "emergency"), (0.4, 0.15, 0.3, 0.15))[0]
    if kind == "emergency":
        sign = rng.choice(rng.choice(table["emergencies"])[lang])
        answer = rng.choice(table["emergency_answer"][lang])
        return rng.choice(w["emergency_ask"]).format(p=sign), answer.format(p=sign, P=upper_first(sign))
    area = rng.choice(table["areas"])[lang]
    problem = rng.choice(area["care_for"] if kind == "care" else area["problems"])
    fields = dict(p=problem, P=upper_first(problem), a=area["part"], d=area["doctor"], c=area["care"])
    question = rng.choice(w[f"{kind}_ask"]).format(**fields)
    return upper_first(question), rng.choice(w[f"{kind}_reply"]).format(**fields)


def health_conversations(rng: random.Random, n: int, table: dict | None = None,
                         avoid: Callable[[str], bool] = lambda question: False) -> list[dict]:
    """n one-exchange conversations, about half in each language, with no user prompt repeated or avoided
    (the table allows a few thousand distinct questions; later ones repeat a question with another answer)."""
    table = table or load_table()
    out, seen = [], set()
    for attempt in range(n * 20):
        if len(out) == n:
            break
        question, answer = health_pair(rng, rng.choice(("en", "zh")), table)
        if avoid(question) or ((question, answer) in seen and attempt < n * 10):
            continue
        seen.add((question, answer))
        out.append({"conversations": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}]})
    return out


if __name__ == "__main__":
    for row in health_conversations(random.Random(0), int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(json.dumps(row, ensure_ascii=False))
