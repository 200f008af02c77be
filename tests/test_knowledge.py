"""The fact generator's answers are right: sums recomputed from the reply, capitals looked up in the table."""
import random
import re

from dataset.knowledge import arithmetic, capital, fact_conversations, fact_paragraph, load_tables, zh_number

OPS = {"plus": "+", "+": "+", "加": "+", "minus": "-", "-": "-", "减": "-", "times": "*", "×": "*", "乘以": "*",
       "Adding": "+", "Taking": "-", "Multiplying": "*"}
SUM = re.compile(r"(\d+) ?(plus|\+|加|minus|-|减|times|×|乘以) ?(\d+) ?(?:is|=|等于) ?(\d+)")
SPELLED = re.compile(r"(Adding|Taking|Multiplying) (\d+) (?:and|from|by) (\d+) (?:gives|leaves) (\d+)")


def check_sum(reply: str) -> bool:
    """True if the reply states a sum, difference or product and it is right."""
    found = SUM.search(reply)
    if found:
        a, op, b, r = found.groups()
    else:
        found = SPELLED.search(reply)
        if not found:
            return False
        op, a, b, r = found.groups()
        if op == "Taking":
            a, b = b, a  # "Taking 3 from 8 leaves 5"
    return eval(f"{a} {OPS[op]} {b}") == int(r)


def test_every_sum_in_the_replies_is_right_and_every_capital_matches_its_country():
    tables = load_tables()
    capitals = {**{en: city for en, _, city, _ in tables["capitals"]},
                **{zh: city for _, zh, _, city in tables["capitals"]}}
    rng = random.Random(3)
    for lang in ("en", "zh") * 500:
        question, reply = arithmetic(rng, lang, tables)
        assert check_sum(reply), (question, reply)
        question, reply = capital(rng, lang, tables)
        country = next(c for c in sorted(capitals, key=len, reverse=True) if c in question)
        assert capitals[country] in reply, (question, reply)


def test_prompts_are_unique_avoid_is_honoured_and_a_seed_gives_the_same_data():
    first = fact_conversations(random.Random(7), 500)
    prompts = [row["conversations"][0]["content"] for row in first]
    assert len(set(prompts)) == 500
    assert first == fact_conversations(random.Random(7), 500)
    again = fact_conversations(random.Random(7), 500, avoid=set(prompts[:100]).__contains__)
    assert not set(prompts[:100]) & {row["conversations"][0]["content"] for row in again}


def test_paragraphs_hold_only_filled_wordings_and_chinese_numerals_read_right():
    rng = random.Random(0)
    for _ in range(200):
        text = fact_paragraph(rng)
        assert "{" not in text and "}" not in text
    assert [zh_number(n) for n in (0, 7, 10, 12, 20, 40, 99)] == ["零", "七", "十", "十二", "二十", "四十", "九十九"]
