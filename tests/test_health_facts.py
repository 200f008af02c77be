"""The base's health questions: each answer names the doctor or the self-care step of the complaint asked about
(looked up in the table, not in the generator), emergencies always send to the emergency department."""
import random

from dataset.health_facts import health_conversations, load_table


def complaint_index(table: dict) -> dict[str, dict]:
    """Every complaint and body part, in both languages, -> the area (one language) it belongs to."""
    index = {}
    for area in table["areas"]:
        for lang in ("en", "zh"):
            for word in area[lang]["problems"] + [area[lang]["part"]]:
                assert word not in index, f"{word!r} is listed under two areas"
                index[word] = area[lang]
    return index


def test_every_answer_matches_the_complaint_it_answers():
    table = load_table()
    index = complaint_index(table)
    signs = {s for e in table["emergencies"] for lang in ("en", "zh") for s in e[lang]}
    langs = set()
    for row in health_conversations(random.Random(5), 3000, table):
        question, answer = (turn["content"] for turn in row["conversations"])
        langs.add("zh" if any("\u4e00" <= ch <= "\u9fff" for ch in question) else "en")
        assert "{" not in question + answer and "}" not in question + answer
        assert answer[-1] in ".。", answer
        if any(s in question or s[:1].upper() + s[1:] in question for s in signs):
            assert "120" in answer or "emergency" in answer, (question, answer)
            continue
        word = max((w for w in index if w in question or w[:1].upper() + w[1:] in question), key=len)
        area = index[word]
        assert area["doctor"] in answer or area["care"] in answer, (question, answer)
        if area["care"] in answer:  # a care step only for the complaints it suits
            assert any(p in answer for p in area["care_for"]), (question, answer)
    assert langs == {"en", "zh"}


def test_no_conversation_repeats_no_question_is_avoided_and_a_seed_gives_the_same_rows():
    first = health_conversations(random.Random(1), 1000)
    questions = [row["conversations"][0]["content"] for row in first]
    pairs = [tuple(turn["content"] for turn in row["conversations"]) for row in first]
    assert len(set(pairs)) == len(pairs) and len(set(questions)) > 600
    assert first == health_conversations(random.Random(1), 1000)
    again = health_conversations(random.Random(1), 1000, avoid=set(questions[:200]).__contains__)
    assert not set(questions[:200]) & {row["conversations"][0]["content"] for row in again}
