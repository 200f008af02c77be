"""Build the small LoRA demo data sets (persona identity and general health Q&A) as chat JSONL files.

The questions, answers and health facts are hand-written tables in dataset/tables/ (lora_identity.json,
lora_medical.json). This script fills them in with a seeded random generator, so running the same command twice
produces byte-identical output.  Examples:

    python dataset/build_lora_data.py identity --name Nova --maker "Starlight Lab"
    python dataset/build_lora_data.py medical
    python dataset/build_lora_data.py all
    python dataset/build_lora_data.py validate
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, also when run as a script
from dataset.data_io import conversation_problem, heldout_set_prompts, write_jsonl  # noqa: E402
from dataset.knowledge import load_tables  # noqa: E402
from dataset.lm_dataset import read_jsonl  # noqa: E402
from model.common import PebbleError  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent
IDENTITY_TABLE = DATA_DIR / "tables" / "lora_identity.json"
MEDICAL_TABLE = DATA_DIR / "tables" / "lora_medical.json"
DEFAULT_SEED = 42
DEFAULT_NAME = "Nova"
DEFAULT_MAKER = "Starlight Lab"
MAX_ZH_CHARS = 120
MAX_EN_WORDS = 60
MIN_IDENTITY_EVAL = 40
# Identity questions: how many surface forms of each hand-written template, and how many composed wordings of each
# kind of question ("who", "name", "maker", ...) per language. Many different wordings, each seen a few times,
# teach the adapter what a question about itself is better than a few templates seen many times.
IDENTITY_VARIANTS = 3
IDENTITY_PER_KIND = 37
# What is asked about each health condition, in the order the eval file walks them.
FIELDS = ("symptoms", "care", "warning", "department")
# Share of the named-question templates written as a surface variant (opener, ending) instead of as they stand.
VARIANT_SHARE = 0.35
# How many of a condition's care steps (the first ones, the most basic) an answer to a described complaint names,
# and how many question tails each training complaint is asked with besides being told bare.
COMPLAINT_STEPS = 2
COMPLAINT_TAILS = 3

Conversation = list[dict[str, str]]

# Politeness openers and closing particles ignored when checking that eval questions are unseen in training; they
# must cover every opener in the tables' "openers".
NORMALISE_PREFIXES = (
    "hey there", "hey", "hello", "hi", "excuse me", "just curious", "quick question", "ok so", "ok", "please",
    "请问", "你好", "嗨", "那个", "想问一下", "我想咨询一下", "麻烦",
)
NORMALISE_SUFFIXES = ("please", "吧", "呀", "呢", "啊", "哦")
SEPARATORS = " ,，!！:：.。?？、;；~"

# --------------------------------------------------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------------------------------------------------


def has_cjk(text: str) -> bool:
    """Return True when the text contains at least one CJK ideograph."""
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def cap(text: str) -> str:
    """Upper-case the first character only."""
    return text[:1].upper() + text[1:]


def join_en(items: Sequence[str], conj: str) -> str:
    """Join English phrases as 'a, b, and c', switching to semicolons when a phrase has its own commas."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} {conj} {items[1]}"
    sep = "; " if any("," in item for item in items) else ", "
    return sep.join(items[:-1]) + f"{sep}{conj} {items[-1]}"


def join_zh(items: Sequence[str], conj: str) -> str:
    """Join Chinese phrases with 、 and a final conjunction, or with ； when a phrase has its own commas or conj."""
    if len(items) == 1:
        return items[0]
    if any(mark in item for item in items for mark in ("、", "，", conj)):
        return "；".join(items)
    return "、".join(items[:-1]) + conj + items[-1]


def split_ending(text: str) -> tuple[str, bool]:
    """Strip the final punctuation of a template and report whether it was a question."""
    is_question = text[-1] in "?？"
    return text.rstrip("?？.。!！"), is_question


def normalise_question(text: str) -> str:
    """Canonical form for disjointness checks: lower case, no politeness opener/particle, no punctuation or spaces."""
    s = text.lower().strip()
    changed = True
    while changed:
        changed = False
        s = s.strip(SEPARATORS)
        for prefix in NORMALISE_PREFIXES:
            rest = s[len(prefix):]
            if s.startswith(prefix) and rest and (has_cjk(prefix) or not rest[0].isalpha()):
                s, changed = rest, True
                break
        for suffix in NORMALISE_SUFFIXES:
            head = s[: -len(suffix)]
            if s.endswith(suffix) and head and (has_cjk(suffix) or not head[-1].isalpha()):
                s, changed = head, True
                break
    return "".join(ch for ch in s if ch.isalnum())


def turn(role: str, content: str) -> dict[str, str]:
    """Build one chat message."""
    return {"role": role, "content": content}


def single(question: str, answer: str) -> Conversation:
    """Build a one-turn conversation."""
    return [turn("user", question), turn("assistant", answer)]


def user_turns(conversations: Iterable[Conversation]) -> list[str]:
    """List every user message of a set of conversations."""
    return [msg["content"] for conv in conversations for msg in conv if msg["role"] == "user"]


def lang_of(text: str) -> str:
    """'zh' for text with a CJK ideograph in it, else 'en': the key of the tables' per-language parts."""
    return "zh" if has_cjk(text) else "en"


def surface_variants(text: str, rng: random.Random, count: int, t: dict) -> list[str]:
    """Return the template plus up to count-1 extra distinct forms, each with an opener and ending from t."""
    core, is_question = split_ending(text)
    lang, kind = lang_of(text), "question" if is_question else "request"
    openers, endings = t["openers"][lang][kind], t["endings"][lang][kind]
    forms = [text]
    for _ in range(count * 4):
        if len(forms) >= count:
            break
        forms.append(one_variant(core, lang, openers, endings, rng))
        forms = list(dict.fromkeys(forms))
    return forms


def one_variant(core: str, lang: str, openers: Sequence[str], endings: Sequence[str], rng: random.Random) -> str:
    """One random surface form of a template core: an opener, the core (in English perhaps lower-cased), an ending."""
    if lang == "zh":
        if core.startswith("请"):
            openers = [p for p in openers if p not in ("请问", "麻烦")]
        return rng.choice(openers) + core + rng.choice(endings)
    opener = rng.choice(openers)
    if core.startswith(("I ", "I'")):  # keep the pronoun capitalised
        body = core
    elif not opener:
        body = core.lower() if rng.random() < 0.3 else core
    else:
        body = core if opener.endswith(("! ", ": ")) else core[:1].lower() + core[1:]
    return opener + body + rng.choice(endings)


# --------------------------------------------------------------------------------------------------------------------
# Identity builder (tables: dataset/tables/lora_identity.json). A question's category is "who", "name", "intro",
# "maker", "human", "ability", "other:<Name>" (are you <Name>?) or "company:<Org>" (were you made by <Org>?); the
# first answer of each category is the reference answer written to the eval file.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    """Names used to fill the identity answer templates."""

    name: str
    maker: str
    name_zh: str
    maker_zh: str


def keep_template(category: str, persona: Persona) -> bool:
    """Drop 'are you X' templates whose X is the persona itself (e.g. --name Pebble)."""
    _, _, other = category.partition(":")
    own = {persona.name.lower(), persona.maker.lower(), persona.name_zh.lower(), persona.maker_zh.lower()}
    return other.lower() not in own


def identity_answer(category: str, lang: str, persona: Persona, index: int, t: dict) -> str:
    """Fill identity answer template number index (wrapped) for a category."""
    kind, _, other = category.partition(":")
    pool = t["answers"][lang][kind]
    name, maker = (persona.name_zh, persona.maker_zh) if lang == "zh" else (persona.name, persona.maker)
    return pool[index % len(pool)].format(name=name, maker=maker, other=other)


def identity_pairs(persona: Persona, rng: random.Random, per_template: int, per_kind: int, t: dict,
                   held_out: set[str]) -> list[Conversation]:
    """Single-turn identity Q&A: every hand-written training template in several surface variants, then up to
    per_kind composed wordings of each kind of question ("who", "name", ...) per language, one form each, leaving
    out those that normalise to a held-out question."""
    asked = []
    for category, text in t["questions"]["train"]["en"] + t["questions"]["train"]["zh"]:
        asked += [(category, question) for question in surface_variants(text, rng, per_template, t)]
    for lang in ("en", "zh"):
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for category, text in composed_questions(t["compose"][lang], lang):
            if normalise_question(text) in held_out:
                continue
            by_kind.setdefault(category.partition(":")[0], []).append((category, text))
        for rows in by_kind.values():
            for category, text in rng.sample(rows, min(per_kind, len(rows))):
                asked.append((category, surface_variants(text, rng, 2, t)[-1] if rng.random() < 0.5 else text))
    return [single(question, identity_answer(category, lang_of(question), persona, rng.randrange(3), t))
            for category, question in asked if keep_template(category, persona)]


def composed_questions(side: dict, lang: str) -> list[tuple[str, str]]:
    """Every (category, wording) one language's compose table spells: each pattern filled with each subject ("you",
    "this assistant", ...) and each value of the slots it names; "other" and "company" questions get the
    category "other:<value>" / "company:<value>", which their answers name."""
    rows = []
    for category, pattern in side["patterns"]:
        names = re.findall(r"{(\w+)}", pattern)
        subjects = side["subjects"] if any(name in side["subjects"][0] for name in names) else [{}]
        slots = [name for name in names if name in side["slots"]]
        for subject, values in itertools.product(subjects, itertools.product(*(side["slots"][n] for n in slots))):
            fill = dict(subject, **dict(zip(slots, values)))
            text = pattern.format(**fill)
            kind = f"{category}:{fill[category]}" if category in fill else category
            rows.append((kind, cap(text) if lang == "en" else text))
    return list(dict.fromkeys(rows))


def chat_pairs(rng: random.Random, t: dict) -> list[Conversation]:
    """Ordinary non-identity chit-chat (no persona): greetings, thanks, simple facts and arithmetic."""
    chat = [row for lang in ("en", "zh") for row in t["greetings"][lang] + t["chat"][lang]]
    facts = t["facts"]["en"] + t["facts"]["zh"]
    convs = []
    for rows, forms in ((chat, 3), (facts, 2)):
        for question, answer in rows:
            convs.extend(single(q, answer) for q in surface_variants(question, rng, forms, t))
    convs.extend(arithmetic_pairs(rng, 45, t))
    return convs


def arithmetic_pairs(rng: random.Random, per_language: int, t: dict) -> list[Conversation]:
    """Small arithmetic questions with correct answers in both languages."""
    convs: list[Conversation] = []
    seen: set[str] = set()
    for lang in ("en", "zh"):
        wording = t["arithmetic"][lang]
        made = 0
        while made < per_language:
            op = rng.choice("+-*")
            a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "*" else (rng.randint(1, 99), rng.randint(1, 99))
            if op == "-" and b > a:
                a, b = b, a
            c = a + b if op == "+" else a - b if op == "-" else a * b
            question = rng.choice(wording["questions"][op]).format(a=a, b=b)
            if question in seen:
                continue
            seen.add(question)
            convs.append(single(question, wording["answers"][op].format(a=a, b=b, c=c)))
            made += 1
    return convs


def multi_turn_pairs(persona: Persona, rng: random.Random, count: int, t: dict) -> list[Conversation]:
    """Two-turn chats: a greeting followed by an identity question, in one language."""
    convs = []
    for i in range(count):
        lang = "zh" if i % 2 == 1 else "en"
        greet_q, greet_a = rng.choice(t["greetings"][lang])
        templates = [row for row in t["questions"]["train"][lang] if keep_template(row[0], persona)]
        category, question = rng.choice(templates)
        answer = identity_answer(category, lang, persona, rng.randrange(3), t)
        convs.append(single(greet_q, greet_a) + single(question, answer))
    return convs


def identity_eval(persona: Persona, t: dict) -> list[Conversation]:
    """Held-out identity questions (wordings never used in training) with reference answers."""
    convs = []
    for category, question in t["questions"]["eval"]["en"] + t["questions"]["eval"]["zh"]:
        if keep_template(category, persona):
            convs.append(single(question, identity_answer(category, lang_of(question), persona, 0, t)))
    return convs


def build_identity(persona: Persona, seed: int,
                   chitchat: bool = False) -> tuple[list[Conversation], list[Conversation]]:
    """Build the identity training and eval conversations.

    Without chitchat, the set holds only persona conversations: train_lora.py replays the base's own general
    chat next to it (--replay_ratio), which keeps general answers better than hand-written chit-chat does."""
    t = load_tables(IDENTITY_TABLE)
    rng = random.Random(seed)
    held_out = {normalise_question(q) for q in user_turns(identity_eval(persona, t)) + heldout_set_prompts()}
    train = (identity_pairs(persona, rng, IDENTITY_VARIANTS, IDENTITY_PER_KIND, t, held_out)
             + (chat_pairs(rng, t) if chitchat else []) + multi_turn_pairs(persona, rng, 40, t))
    train = dedupe_single_turn(train)
    rng.shuffle(train)
    evals = identity_eval(persona, t)
    if len(evals) < MIN_IDENTITY_EVAL:
        raise ValueError(f"only {len(evals)} identity eval questions left for this persona")
    return train, evals


def dedupe_single_turn(convs: list[Conversation]) -> list[Conversation]:
    """Keep the first single-turn conversation for each exact question string; multi-turn ones are kept."""
    seen: set[str] = set()
    kept = []
    for conv in convs:
        if len(conv) == 2:
            if conv[0]["content"] in seen:
                continue
            seen.add(conv[0]["content"])
        kept.append(conv)
    return kept


# --------------------------------------------------------------------------------------------------------------------
# Medical builder (tables: dataset/tables/lora_medical.json): general, conservative health information written for
# this project; no dosages, no diagnoses. A condition has flags "urgent", "chronic" and "plural" (English name takes
# "do"), and per language its "name", the FIELDS' entries ("department" a single string), an optional "note" and
# "complaints": first-person descriptions of its symptoms that need not name it, the last kept for the eval file.
# --------------------------------------------------------------------------------------------------------------------


def close_kind(cond: dict, field: str) -> str:
    """Pick which closing sentence family applies to a condition and field."""
    if field == "symptoms":
        return "default"
    if field == "care":
        return "chronic" if cond["chronic"] else "default"
    if cond["urgent"]:
        return "urgent"
    gp_first = field == "department" and ("GP" in cond["en"]["department"] or "全科" in cond["zh"]["department"])
    return "routine_gp" if gp_first else "routine"


def medical_answer(cond: dict, field: str, lang: str, index: int, t: dict) -> str:
    """Fill answer template number index (wrapped) for one condition, field and language."""
    side = cond[lang]
    pool = t["answers"][lang][field]
    closes = t["closings"][lang][field][close_kind(cond, field)]
    note = side.get("note", "")
    close = note if field == "symptoms" and note else closes[index % len(closes)]
    dept = side["department"]
    text = pool[index % len(pool)].format(name=side["name"], items=medical_items(side, field, lang), close=close,
                                          dept=dept, dept_cap=cap(dept))
    return text.strip()


def medical_items(side: dict, field: str, lang: str) -> str:
    """Render the list of table entries used by a field, for one language's side of a condition."""
    if field == "department":
        return ""
    return join_items(side[field], field, lang)


def join_items(values: Sequence[str], field: str, lang: str) -> str:
    """Join table entries of a field the way its answers list them (care steps as clauses, the rest as a list)."""
    if lang == "zh":
        if field == "care":
            return ("；" if any("，" in v for v in values) else "，").join(values)
        return join_zh(values, "或" if field == "warning" else "和")
    return join_en(values, "or" if field == "warning" else "and")


def medical_questions(cond: dict, field: str, lang: str, split: str, t: dict) -> list[str]:
    """Fill the train or eval question templates of one field for a condition."""
    does = "do" if cond["plural"] and lang == "en" else "does"
    return [cap(q.format(name=cond[lang]["name"], does=does)) for q in t["questions"][lang][field][split]]


def medical_train(rng: random.Random, t: dict) -> list[Conversation]:
    """Training Q&A: every condition x field x language x training template once, some as a surface variant, then
    the safety and complaint Q&A. One form per template keeps the named questions from crowding out complaints."""
    convs = []
    for cond in t["conditions"]:
        for field in FIELDS:
            for lang in ("zh", "en"):
                for question in medical_questions(cond, field, lang, "train", t):
                    form = surface_variants(question, rng, 2, t)[-1] if rng.random() < VARIANT_SHARE else question
                    convs.append(single(form, medical_answer(cond, field, lang, rng.randrange(2), t)))
    return convs + medical_safety(rng, t) + complaint_pairs(rng, t)


def medical_safety(rng: random.Random, t: dict) -> list[Conversation]:
    """Safety Q&A: not a doctor, no diagnosis, no dosages, and emergencies that need a call for help."""
    convs = []
    for row in t["safety"]:
        for lang in ("zh", "en"):
            for question in row[lang]["questions"]:
                convs.extend(single(q, row[lang]["answer"]) for q in surface_variants(question, rng, 4, t))
    return convs


def complaint_question(complaint: str, tail: str, lang: str) -> str:
    """A described complaint followed by a question tail, or the bare complaint when the tail is empty."""
    if lang == "zh":
        return complaint + ("，" + tail if tail else "。")
    return complaint + (". " + tail if tail else ".")


def complaint_answer(cond: dict, lang: str, index: int, t: dict) -> str:
    """Answer a described complaint with the condition's department, then its first care steps, never its name:
    the asker described symptoms, and naming a condition would be a diagnosis. The department comes first, whether
    the asker wants self-care or a doctor: it is short, and put first it was matched to the complaint more often."""
    side = cond[lang]
    closes = t["closings"][lang]["care"][close_kind(cond, "care")]
    steps = join_items(side["care"][:COMPLAINT_STEPS], "care", lang)
    return t["complaint_answers"][lang].format(dept=side["department"], steps=steps, close=closes[index % len(closes)])


def complaint_pairs(rng: random.Random, t: dict) -> list[Conversation]:
    """Complaint Q&A: every training complaint (all but the last of a list) told bare and asked with
    COMPLAINT_TAILS random question tails (self-care or which doctor)."""
    convs = []
    for cond in t["conditions"]:
        for lang in ("zh", "en"):
            for complaint in cond[lang]["complaints"][:-1]:
                for tail in [""] + rng.sample(t["complaint_tails"][lang], COMPLAINT_TAILS):
                    answer = complaint_answer(cond, lang, rng.randrange(2), t)
                    convs.append(single(complaint_question(complaint, tail, lang), answer))
    return convs


def medical_eval(t: dict) -> list[Conversation]:
    """Held-out Q&A: one eval-only wording per condition, field and language, then each condition's held-out
    complaint (its last) per language with a question tail, each with its reference answer."""
    convs = []
    for i, cond in enumerate(t["conditions"]):
        for j, field in enumerate(FIELDS):
            for lang in ("zh", "en"):
                options = medical_questions(cond, field, lang, "eval", t)
                question = options[(i + j) % len(options)]
                convs.append(single(question, medical_answer(cond, field, lang, 0, t)))
    for i, cond in enumerate(t["conditions"]):
        for lang in ("zh", "en"):
            tails = t["complaint_tails"][lang]
            question = complaint_question(cond[lang]["complaints"][-1], tails[i % len(tails)], lang)
            convs.append(single(question, complaint_answer(cond, lang, 0, t)))
    return convs


def build_medical(seed: int) -> tuple[list[Conversation], list[Conversation]]:
    """Build the medical training and eval conversations."""
    t = load_tables(MEDICAL_TABLE)
    rng = random.Random(seed)
    train = dedupe_single_turn(medical_train(rng, t))
    rng.shuffle(train)
    return train, medical_eval(t)


# --------------------------------------------------------------------------------------------------------------------
# Checks, writing and reporting
# --------------------------------------------------------------------------------------------------------------------


def check_disjoint(train: list[Conversation], evals: list[Conversation]) -> None:
    """Raise ValueError if any eval question equals a training question after normalisation (kept under -O)."""
    seen = {normalise_question(q) for q in user_turns(train)}
    eval_norm = [normalise_question(q) for q in user_turns(evals)]
    clashes = sorted({q for q in eval_norm if q in seen})
    if clashes:
        raise ValueError(f"eval questions also appear in training: {clashes[:5]}")
    if len(set(eval_norm)) != len(eval_norm):
        raise ValueError("the eval set repeats a question")


def lora_problem(conv: object) -> str | None:
    """What is wrong with one conversation of a LoRA file, or None: the loader's rules and turn order
    (data_io.conversation_problem), then no outer whitespace and short enough assistant replies."""
    problem = conversation_problem(conv)
    if problem:
        return problem
    for msg in conv:
        if msg["content"] != msg["content"].strip():
            return "content must be a string without outer whitespace"
        if msg["role"] == "assistant" and not short_enough(msg["content"]):
            return f"assistant reply too long: {msg['content'][:40]}"
    return None


def short_enough(text: str) -> bool:
    """Reply length limit: at most MAX_ZH_CHARS characters in Chinese or MAX_EN_WORDS words in English."""
    return len(text) <= MAX_ZH_CHARS if has_cjk(text) else len(text.split()) <= MAX_EN_WORDS


def load_checked(path: Path) -> list[Conversation]:
    """Read a JSONL file as the loader does and check every conversation; raise ValueError on the first problem."""
    rebuild = "build it with: python dataset/build_lora_data.py all"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; {rebuild}")
    convs, bad_lines = read_jsonl(path, "conversations", skip_bad_lines=True)
    if bad_lines:
        raise ValueError(f"{bad_lines[0]} (in {path.parent}); {rebuild}")
    for n, conv in enumerate(convs, 1):
        problem = lora_problem(conv)
        if problem:
            raise ValueError(f"{path}: conversation {n}: {problem}")
    return convs


def display_path(path: Path) -> str:
    """Show a path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe(path: Path, convs: list[Conversation]) -> str:
    """One summary line: path, conversations, zh/en split, multi-turn count and size."""
    zh = sum(has_cjk(conv[0]["content"]) for conv in convs)
    multi = sum(len(conv) > 2 for conv in convs)
    size = path.stat().st_size / 1024
    counts = f"{len(convs)} conversations (zh {zh}, en {len(convs) - zh}, multi-turn {multi})"
    return f"{display_path(path)}: {counts}, {size:.1f} KB"


def save_pair(train: list[Conversation], evals: list[Conversation], out: Path, eval_out: Path) -> None:
    """Check, write, re-validate and report a training file and its held-out eval file."""
    check_disjoint(train, evals)
    for path, convs in ((out, train), (eval_out, evals)):
        write_jsonl(path, ({"conversations": conv} for conv in convs))
        if load_checked(path) != convs:
            raise ValueError(f"{path} does not read back as written")
        print(describe(path, convs))


def default_eval_path(out: Path) -> Path:
    """Eval file next to the training file: name.jsonl -> name_eval.jsonl."""
    return out.with_name(out.stem + "_eval" + out.suffix)


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def run_identity(args: argparse.Namespace) -> None:
    """Handle the 'identity' sub-command."""
    persona = Persona(args.name, args.maker, args.name_zh or args.name, args.maker_zh or args.maker)
    out = Path(args.out)
    train, evals = build_identity(persona, args.seed, args.with_chitchat)
    save_pair(train, evals, out, Path(args.eval_out) if args.eval_out else default_eval_path(out))


def run_medical(args: argparse.Namespace) -> None:
    """Handle the 'medical' sub-command."""
    out = Path(args.out)
    train, evals = build_medical(args.seed)
    save_pair(train, evals, out, Path(args.eval_out) if args.eval_out else default_eval_path(out))


def run_all(args: argparse.Namespace) -> None:
    """Handle the 'all' sub-command: both data sets with default names and paths."""
    persona = Persona(DEFAULT_NAME, DEFAULT_MAKER, DEFAULT_NAME, DEFAULT_MAKER)
    out_dir = Path(args.out_dir)
    train, evals = build_identity(persona, args.seed)
    save_pair(train, evals, out_dir / "lora_identity.jsonl", out_dir / "lora_identity_eval.jsonl")
    train, evals = build_medical(args.seed)
    save_pair(train, evals, out_dir / "lora_medical.jsonl", out_dir / "lora_medical_eval.jsonl")


def run_validate(args: argparse.Namespace) -> None:
    """Handle the 'validate' sub-command: structural checks plus train/eval disjointness for known pairs."""
    paths = [Path(p) for p in args.files] or [DATA_DIR / f"lora_{n}.jsonl" for n in
                                              ("identity", "identity_eval", "medical", "medical_eval")]
    loaded = {}
    for path in paths:
        loaded[path] = load_checked(path)
        print(describe(path, loaded[path]))
    for path, convs in loaded.items():
        eval_path = default_eval_path(path)
        if eval_path in loaded:
            check_disjoint(convs, loaded[eval_path])
            print(f"{eval_path.name} is disjoint from {path.name}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Build the LoRA demo data sets (identity persona, health Q&A).")
    sub = parser.add_subparsers(dest="command", required=True)

    ident = sub.add_parser("identity", help="persona identity set plus held-out eval questions")
    ident.add_argument("--name", default=DEFAULT_NAME, help="assistant name used in English answers")
    ident.add_argument("--maker", default=DEFAULT_MAKER, help="organisation that made the assistant")
    ident.add_argument("--name_zh", default="", help="name used in Chinese answers (default: --name)")
    ident.add_argument("--maker_zh", default="", help="maker used in Chinese answers (default: --maker)")
    ident.add_argument("--out", default=str(DATA_DIR / "lora_identity.jsonl"), help="training JSONL path")
    ident.add_argument("--eval_out", default="", help="eval JSONL path (default: <out stem>_eval.jsonl)")
    ident.add_argument("--with_chitchat", action="store_true",
                       help="also add ordinary chit-chat (off by default: train_lora.py replays general chat)")
    ident.set_defaults(func=run_identity)

    med = sub.add_parser("medical", help="general health Q&A set plus held-out eval questions")
    med.add_argument("--out", default=str(DATA_DIR / "lora_medical.jsonl"), help="training JSONL path")
    med.add_argument("--eval_out", default="", help="eval JSONL path (default: <out stem>_eval.jsonl)")
    med.set_defaults(func=run_medical)

    every = sub.add_parser("all", help="build all four files with default settings")
    every.add_argument("--out_dir", default=str(DATA_DIR), help="folder for the four JSONL files")
    every.set_defaults(func=run_all)

    check = sub.add_parser("validate", help="check existing files (default: the four LoRA files)")
    check.add_argument("files", nargs="*", help="JSONL files to check")
    check.set_defaults(func=run_validate)

    for command in (ident, med, every):
        command.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (output is deterministic)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    for name in ("name", "maker"):
        if not getattr(args, name, "x").strip():
            print(f"--{name} must not be empty", file=sys.stderr)
            return 2
    try:
        args.func(args)
    except (ValueError, AssertionError, OSError, PebbleError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
