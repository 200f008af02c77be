"""Simple facts in many wordings: questions and answers for SFT, and plain sentences for pretraining.

The facts (capitals, colours, counts, a word list) and every wording live in dataset/tables/knowledge.json;
sums are computed here. A small model learns a fact only after seeing it many times in varied wordings, so
the generators draw a fresh question wording and fact for every sample, and every answer restates what was
asked ("3 plus 4 is 7.", "法国的首都是巴黎。") so that the answer can be read off the question's own words.

    python dataset/knowledge.py 5          # print five conversations and one paragraph
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Callable

TABLES = Path(__file__).resolve().parent / "tables" / "knowledge.json"
OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}
ZH_DIGITS = "零一二三四五六七八九十"


def load_tables(path: Path = TABLES) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def zh_number(n: int) -> str:
    """0-99 in Chinese numerals: 7 -> 七, 12 -> 十二, 40 -> 四十."""
    if n <= 10:
        return ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return (ZH_DIGITS[tens] if tens > 1 else "") + "十" + (ZH_DIGITS[ones] if ones else "")


# ---------------------------------------------------------------- one question and its answer per kind


def operands(rng: random.Random, op: str) -> tuple[int, int]:
    """Sums within 0-10 + 0-10, differences of such sums, products up to 10 x 10."""
    if op == "mul":
        return rng.randint(1, 10), rng.randint(1, 10)
    a, b = rng.randint(0, 10), rng.randint(0, 10)
    return (a + b, b) if op == "sub" else (a, b)


def spoken(rng: random.Random, n: int, lang: str, words: list[str]) -> str:
    """A number as digits, or now and then as a word (seven, 七)."""
    if rng.random() < 0.3:
        return words[n] if lang == "en" and n < len(words) else zh_number(n) if lang == "zh" else str(n)
    return str(n)


def arithmetic(rng: random.Random, lang: str, t: dict) -> tuple[str, str]:
    w = t["arithmetic"]
    op = rng.choice(("add", "add", "sub", "sub", "mul"))
    if rng.random() < 0.25:  # a short story problem
        story = rng.choice(w[f"stories_{lang}"])
        a, b = operands(rng, story["op"])
        name, pronoun = rng.choice(w["names_en"]) if lang == "en" else (rng.choice(w["names_zh"]), "")
        fields = dict(a=a, b=b, r=OPS[story["op"]](a, b), name=name, pron=pronoun, thing=rng.choice(w[f"things_{lang}"]))
        return story["ask"].format(**fields), story["reply"].format(**fields)
    a, b = operands(rng, op)
    words = w["en"]["numbers"]
    sa, sb = spoken(rng, a, lang, words), spoken(rng, b, lang, words)
    if rng.random() < 0.35:
        question = rng.choice(w[lang]["imperative"][op]).format(a=sa, b=sb)
    else:
        expr = rng.choice(w[lang]["expr"][op]).format(a=sa, b=sb)
        question = rng.choice(w[lang]["ask"]).format(e=expr, E=upper_first(expr))
    question = question.replace("二个", "两个")  # a count before 个 is 两, not 二
    return question, rng.choice(w[lang]["reply"][op]).format(a=a, b=b, r=OPS[op](a, b))


def capital(rng: random.Random, lang: str, t: dict) -> tuple[str, str]:
    country_en, country_zh, city_en, city_zh = rng.choice(t["capitals"])
    c, x = (country_en, city_en) if lang == "en" else (country_zh, city_zh)
    w = t["capital_wordings"][lang]
    return rng.choice(w["ask"]).format(c=c), rng.choice(w["reply"]).format(c=upper_first(c), x=x)


def count(rng: random.Random, lang: str, t: dict) -> tuple[str, str]:
    f = rng.choice(t["counts"])
    ask = rng.choice(t["count_wordings"][lang]["ask"])
    if lang == "en":
        unit, whole, n = f["unit_en"], f["whole_en"], f["n"]
        return (ask.format(u=unit, t=whole, T=upper_first(whole)),
                rng.choice((f"There are {n} {unit} in {whole}.", f"{upper_first(whole)} has {n} {unit}.")))
    z, y, unit, n = f["whole_zh"], f["whole_zh_long"], f["unit_zh"], f["n"]
    return ask.format(z=z, y=y, u=unit), rng.choice((f"{z}有{n}{unit}。", f"{y}共有{n}{unit}。"))


def colour(rng: random.Random, lang: str, t: dict) -> tuple[str, str]:
    thing_en, thing_zh, colour_en, colour_zh = rng.choice(t["colours"])
    ask = rng.choice(t["colour_wordings"][lang]["ask"])
    if lang == "en":
        return (ask.format(t=thing_en, T=upper_first(thing_en)),
                rng.choice((f"{upper_first(thing_en)} is usually {colour_en}.", f"{upper_first(thing_en)} is {colour_en}.")))
    return ask.format(t=thing_zh), rng.choice((f"{thing_zh}通常是{colour_zh}的。", f"{thing_zh}是{colour_zh}的。"))


def translation(rng: random.Random, lang: str, t: dict) -> tuple[str, str]:
    """English word -> Chinese or back; lang is the language of the question."""
    en, zh = rng.choice(t["words"])
    w = t["translation_wordings"]
    if lang == "en":
        if rng.random() < 0.5:
            return rng.choice(w["en_to_zh"]).format(w=en), f"The Chinese for \"{en}\" is {zh}."
        return rng.choice([q for q in w["zh_to_en"] if q.isascii() or "English" in q]).format(z=zh), \
            f"The English for {zh} is \"{en}\"."
    if rng.random() < 0.5:
        return rng.choice([q for q in w["zh_to_en"] if "English" not in q]).format(z=zh), f"“{zh}”用英语说是“{en}”。"
    return rng.choice(w["en_word_in_zh"]).format(w=en), f"“{en}”用中文说是“{zh}”。"


KINDS = {"arithmetic": (arithmetic, 0.45), "capital": (capital, 0.2), "count": (count, 0.1),
         "colour": (colour, 0.1), "translation": (translation, 0.15)}


def fact_conversations(rng: random.Random, n: int, tables: dict | None = None,
                       avoid: Callable[[str], bool] = lambda question: False) -> list[dict]:
    """n one-exchange conversations, half in each language, with no user prompt repeated or avoided."""
    tables = tables or load_tables()
    makers, weights = zip(*KINDS.values())
    seen, out = set(), []
    for _ in range(n * 50):
        if len(out) == n:
            break
        question, answer = rng.choices(makers, weights)[0](rng, rng.choice(("en", "zh")), tables)
        if question in seen or avoid(question):
            continue
        seen.add(question)
        out.append({"conversations": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}]})
    return out


def fact_paragraph(rng: random.Random, tables: dict | None = None, sentences: int = 8,
                   avoid: Callable[[str], bool] = lambda question: False) -> str:
    """Pretraining text: a few questions with their answers written out, in one language; no question for
    which avoid(question) is true."""
    tables = tables or load_tables()
    lang = rng.choice(("en", "zh"))
    makers, weights = zip(*KINDS.values())
    pairs = []
    while len(pairs) < sentences:
        question, answer = rng.choices(makers, weights)[0](rng, lang, tables)
        if not avoid(question):
            pairs.append((question, answer))
    if rng.random() < 0.5:
        return (" " if lang == "en" else "").join(answer for _, answer in pairs)
    q, a = ("Q: ", "A: ") if lang == "en" else ("问：", "答：")
    return "\n".join(f"{q}{question}\n{a}{answer}" for question, answer in pairs)


if __name__ == "__main__":
    rng = random.Random(0)
    for row in fact_conversations(rng, int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(json.dumps(row, ensure_ascii=False))
    print(fact_paragraph(rng))
