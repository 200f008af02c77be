"""The everyday-chat table: the shipped file validates, the validator names bad lines, conversations are seeded."""
import json
import random
from pathlib import Path

import pytest

from dataset.everyday_chat import (DEFAULT_PATH, MAX_EN_WORDS, MAX_ZH_CHARS, TableError, conversations, counts,
                                   load_intents, main, parse_intents, prompt_key)

ROOT = Path(__file__).resolve().parent.parent


def intent(lang="en", name="keep_warm", prompts=None, replies=None) -> dict:
    if lang == "zh":
        prompts = prompts or ["冬天怎么保暖？", "天冷穿什么", "怕冷怎么办", "出门怎么穿不冷", "冬天穿衣建议"]
        replies = replies or ["穿保暖内衣加毛衣，外面套防风外套。",
                              "戴好帽子和手套，脚也要保暖。"]
    else:
        prompts = prompts or ["How do I keep warm?", "it's freezing, what do I wear", "Winter clothes tips?",
                              "I always feel cold outside.", "Dressing for snow?"]
        replies = replies or ["Wear layers and a windproof coat.", "Keep your head, hands and feet covered."]
    return {"intent": name, "lang": lang, "prompts": prompts, "replies": replies}


def lines(*objs) -> list[str]:
    return [json.dumps(obj, ensure_ascii=False) for obj in objs]


def rejected(*objs) -> str:
    with pytest.raises(TableError) as info:
        parse_intents(lines(*objs), source="sample.jsonl")
    return str(info.value)


@pytest.fixture(scope="module")
def table():
    return load_intents(DEFAULT_PATH)


def test_shipped_table_validates_and_is_large_enough(table):
    per_lang = counts(table)
    assert per_lang["zh"]["intents"] >= 300 and per_lang["en"]["intents"] >= 300
    assert all(5 <= len(item["prompts"]) <= 8 and 2 <= len(item["replies"]) <= 4 for item in table)


def test_shipped_prompts_stay_out_of_the_sft_eval_set(table):
    """A prompt in the table must not be a user turn of sft_demo_eval.jsonl, or training on it would leak the eval."""
    ours = {prompt_key(p) for item in table for p in item["prompts"]}
    with (ROOT / "dataset" / "sft_demo_eval.jsonl").open(encoding="utf-8") as handle:
        leaked = [turn["content"] for line in handle for turn in json.loads(line)["conversations"]
                  if turn["role"] == "user" and prompt_key(turn["content"]) in ours]
    assert leaked == []


def test_good_sample_parses():
    parsed = parse_intents(lines(intent("en"), intent("zh")) + [""])
    assert [item["lang"] for item in parsed] == ["en", "zh"]


@pytest.mark.parametrize("lang,reply", [
    ("en", "I'm happy to help: wear layers."),
    ("en", "I am a small model, so wear layers."),
    ("en", "As an AI, the best advice is layers."),
    ("en", "My name is Nova. Wear layers."),
    ("en", "Pebble says: wear layers."),
    ("zh", "我是小助手，建议多穿点。"),
    ("zh", "我叫Pebble，记得戴手套。"),
    ("zh", "作为一个语言模型，建议多穿点。"),
])
def test_rejects_self_reference(lang, reply):
    bad = intent(lang, name="bad_one")
    bad["replies"] = [bad["replies"][0], reply]
    message = rejected(intent(lang), bad)
    assert "sample.jsonl, line 2" in message and "refers to itself" in message


def test_rejects_duplicate_prompt_across_lines():
    first = intent("en")
    second = intent("en", name="other", prompts=["Any tips for a cold morning?", "HOW do I keep warm",
                                                 "What should I wear?", "Coat or jacket?", "Layers?"])
    message = rejected(first, second)
    assert "line 2" in message and "duplicate prompt 'HOW do I keep warm' (already on line 1)" in message


def test_rejects_duplicate_prompt_within_an_intent():
    bad = intent("zh", prompts=["冬天怎么保暖？", "冬天怎么保暖", "天冷穿什么", "怕冷怎么办",
                                "冬天穿衣建议"])
    assert "line 1: prompts repeat themselves" in rejected(bad)


def test_rejects_too_long_replies():
    long_en = " ".join(["word"] * (MAX_EN_WORDS + 1)) + "."
    assert f"{MAX_EN_WORDS + 1} words" in rejected(intent("en", replies=["Wear layers.", long_en]))
    long_zh = "多" * MAX_ZH_CHARS + "穿。"
    assert f"{MAX_ZH_CHARS + 2} characters" in rejected(intent("zh", replies=["多穿点。", long_zh]))
    four = "Wear a coat. Add a hat. Bring gloves. Stay dry."
    assert "4 sentences" in rejected(intent("en", replies=["Wear layers.", four]))


@pytest.mark.parametrize("change,expected", [
    ({"lang": "fr"}, "lang must be one of zh, en"),
    ({"intent": "Keep Warm"}, "snake_case"),
    ({"replies": ["Only one."]}, "replies must be a list of 2-4"),
    ({"prompts": ["Too few?", "Really?"]}, "prompts must be a list of 5-8"),
    ({"replies": ["Wear layers.", ""]}, "reply must be a non-empty string"),
    ({"replies": ["Wear layers.", "See https://example.org for more."]}, "URL"),
    ({"replies": ["Wear layers.", "Stay warm \U0001F600"]}, "emoji"),
    ({"replies": ["Wear layers.", "多穿点衣服。"]}, "not English"),
    ({"extra": 1}, "fields must be exactly"),
])
def test_rejects_malformed_lines(change, expected):
    assert expected in rejected({**intent("en"), **change})


def test_rejects_bad_json_and_repeated_intent():
    assert "line 1: not valid JSON" in str(pytest.raises(TableError, parse_intents, ["{oops"]).value)
    again = intent("en", prompts=["Warmth tips?", "cold hands", "Too chilly outside", "Brr!", "Frosty day plan"])
    assert "intent 'keep_warm' (en) already on line 1" in rejected(intent("en"), again)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "table.jsonl"
    bad = intent("en", replies=["Wear layers.", "I'm sure layers work."])
    path.write_text("\n".join(lines(intent("zh"), bad)) + "\n", encoding="utf-8")
    with pytest.raises(TableError, match=rf"{path.name}, line 2: reply refers to itself"):
        load_intents(path)


def test_conversations_are_seeded_and_alternate(table):
    first = conversations(table, random.Random(7))
    assert first == conversations(table, random.Random(7))
    assert first != conversations(table, random.Random(8))
    assert len(first) == sum(len(item["prompts"]) for item in table)
    replies = {r for item in table for r in item["replies"]}
    for chat in first:
        turns = chat["conversations"]
        assert [t["role"] for t in turns] == ["user", "assistant"]
        assert turns[1]["content"] in replies


def test_conversations_pair_each_prompt_with_its_own_replies():
    sample = parse_intents(lines(intent("en"), intent("zh")))
    chats = conversations(sample, random.Random(0))
    for item in sample:
        for prompt in item["prompts"]:
            (chat,) = [c for c in chats if c["conversations"][0]["content"] == prompt]
            assert chat["conversations"][1]["content"] in item["replies"]


def test_cli_prints_counts(capsys, tmp_path):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["lang", "intents", "prompts", "replies"]
    assert out.splitlines()[1].startswith("zh") and out.splitlines()[2].startswith("en")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    assert main([str(bad)]) == 1
    assert "line 1: not valid JSON" in capsys.readouterr().err
