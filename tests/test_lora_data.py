"""Medical LoRA data: described complaints (first-person symptoms, no condition name) are answered with that
condition's care steps and department, never a diagnosis or a dose; the build is deterministic, matches the
committed files and keeps its eval questions and the held-out health prompts out of training."""
import json
import re

import pytest

from dataset.build_lora_data import (DATA_DIR, DEFAULT_SEED, MEDICAL_TABLE, build_medical, check_disjoint,
                                     load_checked, normalise_question, user_turns)
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
