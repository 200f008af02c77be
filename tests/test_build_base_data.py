"""The base's training files hold no held-out prompt, and the everyday replies are all used."""
import json

from dataset.build_base_data import everyday_conversations, first_prompt, held_out_keys, main
from dataset.everyday_chat import load_intents, prompt_key


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_every_everyday_prompt_gets_each_reply_of_its_intent_once():
    intents = [{"intent": "x", "lang": "en", "prompts": ["a?", "b?", "c?"], "replies": ["1.", "2."]}]
    pairs = [tuple(t["content"] for t in row["conversations"]) for row in everyday_conversations(intents)]
    assert sorted(pairs) == sorted((p, r) for p in ("a?", "b?", "c?") for r in ("1.", "2."))


def test_built_files_hold_no_held_out_prompt_and_the_same_seed_gives_the_same_files(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"Paragraph number {i} of plain text."}) + "\n"
                              for i in range(50)), encoding="utf-8")
    args = ["--corpus", str(corpus), "--corpus_tokens", "100", "--fact_paragraphs", "20",
            "--fact_conversations", "3000", "--everyday_text_copies", "1"]
    main([*args, "--out_dir", str(tmp_path / "a"), "--replay_out", str(tmp_path / "a" / "replay.jsonl")])
    main([*args, "--out_dir", str(tmp_path / "b"), "--replay_out", ""])
    for name in ("pretrain_base.jsonl", "sft_base.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    banned = held_out_keys()
    assert len(banned) > 800  # the held-out sets and the demo eval sets were read
    sft = read_jsonl(tmp_path / "a" / "sft_base.jsonl")
    replay = read_jsonl(tmp_path / "a" / "replay.jsonl")
    assert all(row in sft for row in replay)
    everyday = {p for intent in load_intents() for p in intent["prompts"]}
    replayed_everyday = [first_prompt(row) for row in replay if first_prompt(row) in everyday]
    sft_everyday = {first_prompt(row) for row in sft} & everyday
    assert sorted(replayed_everyday) == sorted(sft_everyday)  # each everyday prompt of the SFT file once
    others = sum(first_prompt(row) not in everyday for row in sft)
    assert len(replay) == min(8000, len(sft_everyday) + others)
    users = [prompt_key(t["content"]) for row in sft for t in row["conversations"] if t["role"] == "user"]
    assert users and not banned.intersection(users)
    texts = [row["text"] for row in read_jsonl(tmp_path / "a" / "pretrain_base.jsonl")]
    assert 0 < sum("Paragraph number" in t for t in texts) < 50  # only about --corpus_tokens of the corpus
