"""LoRA demo data. Medical: described complaints (first-person symptoms, no condition name) are answered with that
condition's care steps and department, never a diagnosis or a dose. Identity: composed wordings are well formed,
answers name the persona. Both builds are deterministic, match the committed files and keep their eval questions
and the held-out prompts out of training."""
import json
import re

import pytest

from dataset.build_lora_data import (DATA_DIR, DEFAULT_MAKER, DEFAULT_NAME, DEFAULT_SEED, IDENTITY_TABLE,
                                     MEDICAL_TABLE, Persona, build_identity, build_medical, check_disjoint,
                                     composed_questions, load_checked, normalise_question, user_turns)
from dataset.data_io import heldout_set_prompts
from dataset.knowledge import load_tables

LANGS = ("zh", "en")
# A number followed by a dose unit: "2 片", "500mg", "10 ml".
DOSE = re.compile(r"\d+(\.\d+)?\s*(mg|ml|毫克|克|毫升|片|粒|颗)(?![a-z])", re.I)
# Wordings that would tell the asker what they have.
DIAGNOSIS = re.compile(r"\byou (have|'ve got|are suffering from)\b|你(得了|患了|这是)", re.I)


@pytest.fixture(scope="module")
def tables() -> dict:
    return load_tables(MEDICAL_TABLE)


@pytest.fixture(scope="module")
def built() -> tuple[list, list]:
    return build_medical(DEFAULT_SEED)


def complaint_of(question: str, tables: dict) -> tuple[dict, str, bool] | None:
    """(condition, language, held out) of the complaint a question starts with, or None for other questions."""
    hits = [(cond, lang, i == len(cond[lang]["complaints"]) - 1)
            for cond in tables["conditions"] for lang in LANGS
            for i, complaint in enumerate(cond[lang]["complaints"]) if question.startswith(complaint)]
    assert len(hits) <= 1, f"{question!r} starts with more than one complaint"
    return hits[0] if hits else None


def answers(convs: list) -> list[str]:
    return [msg["content"] for conv in convs for msg in conv if msg["role"] == "assistant"]


def test_every_condition_has_several_distinct_complaints_per_language(tables):
    for cond in tables["conditions"]:
        for lang in LANGS:
            complaints = cond[lang]["complaints"]
            assert len(complaints) >= 4, cond["en"]["name"]
            assert len(set(complaints)) == len(complaints)
            assert all(c == c.strip() and c[-1] not in ".。?？!！" for c in complaints), "tails add the punctuation"
            assert all(("\u4e00" <= c[0] <= "\u9fff") == (lang == "zh") for c in complaints)


def test_complaint_answers_give_department_and_care_without_diagnosis(tables, built):
    train, evals = built
    seen = {(cond["en"]["name"], lang): 0 for cond in tables["conditions"] for lang in LANGS}
    for conv in train + evals:
        found = complaint_of(conv[0]["content"], tables)
        if found is None:
            continue
        cond, lang, _ = found
        answer = conv[1]["content"]
        assert cond[lang]["department"].lower() in answer.lower(), (conv[0]["content"], answer)
        assert any(step in answer for step in cond[lang]["care"]), answer
        assert not DIAGNOSIS.search(answer), answer
        seen[cond["en"]["name"], lang] += 1
    assert all(seen.values()), [key for key, n in seen.items() if not n]


def test_held_out_complaints_are_only_in_the_eval_file(tables, built):
    train, evals = built
    in_train = {complaint_of(q, tables)[2] for q in user_turns(train) if complaint_of(q, tables)}
    assert in_train == {False}
    held_out = [complaint_of(q, tables) for q in user_turns(evals)]
    assert sum(bool(h and h[2]) for h in held_out) == len(tables["conditions"]) * len(LANGS)
    check_disjoint(train, evals)


def test_no_answer_gives_a_dose(built):
    train, evals = built
    assert DOSE.search("每次2片") and DOSE.search("take 500 mg")  # the pattern itself catches doses
    assert [a for a in answers(train + evals) if DOSE.search(a)] == []


def test_build_is_deterministic_and_matches_the_committed_files(built):
    assert build_medical(DEFAULT_SEED) == built
    assert build_medical(DEFAULT_SEED + 1) != built
    train, evals = built
    assert load_checked(DATA_DIR / "lora_medical.jsonl") == train
    assert load_checked(DATA_DIR / "lora_medical_eval.jsonl") == evals


def test_no_training_question_is_a_held_out_health_prompt(built):
    with open(DATA_DIR / "heldout" / "health.jsonl", encoding="utf-8") as f:
        held_out = {normalise_question(json.loads(line)["prompt"]) for line in f if line.strip()}
    assert held_out
    trained = {normalise_question(q) for q in user_turns(built[0])}
    assert not held_out & trained


# ---------------------------------------------------------------- identity data

@pytest.fixture(scope="module")
def nova() -> Persona:
    return Persona(DEFAULT_NAME, DEFAULT_MAKER, DEFAULT_NAME, DEFAULT_MAKER)


def test_identity_build_is_deterministic_and_matches_the_committed_files(nova):
    train, evals = build_identity(nova, DEFAULT_SEED)
    assert build_identity(nova, DEFAULT_SEED) == (train, evals)
    assert load_checked(DATA_DIR / "lora_identity.jsonl") == train
    assert load_checked(DATA_DIR / "lora_identity_eval.jsonl") == evals


@pytest.mark.parametrize("lang", LANGS)
def test_composed_identity_questions_fill_every_slot_and_name_whom_they_ask_about(lang):
    side = load_tables(IDENTITY_TABLE)["compose"][lang]
    rows = composed_questions(side, lang)
    assert len(rows) == len(set(rows)) > 10 * len(side["patterns"])
    for category, text in rows:
        assert not re.search(r"[{}]", text), text
        kind, _, other = category.partition(":")
        assert kind in ("who", "name", "intro", "maker", "other", "company", "human"), category
        assert other in text, (category, text)  # "are you Siri?" is answered "I'm not Siri"
        assert lang == "zh" or text[0].isupper(), text
    # every subject and every slot value is used somewhere
    texts = " ".join(text for _, text in rows)
    assert all(subject["subj"] in texts for subject in side["subjects"])
    assert all(value in texts for values in side["slots"].values() for value in values)


def test_identity_training_questions_are_neither_eval_nor_held_out_wordings(nova):
    train, evals = build_identity(nova, DEFAULT_SEED)
    held_out = {normalise_question(q) for q in user_turns(evals) + heldout_set_prompts()}
    assert len(held_out) > 100
    assert not held_out & {normalise_question(q) for q in user_turns(train)}


def test_identity_answers_name_the_persona_and_never_start_with_its_maker():
    train, _ = build_identity(Persona("Zephyr", "Acme Works", "Zephyr", "Acme Works"), DEFAULT_SEED)
    for conv in train:
        reply = conv[-1]["content"]
        assert "Zephyr" in reply and "Nova" not in reply and "Starlight" not in reply, reply
        # a reply that opens with the maker's name leaks into everyday answers whose opening shares its first
        # tokens ("Starlight ..." and "Start with ...")
        assert not reply.startswith("Acme"), reply
