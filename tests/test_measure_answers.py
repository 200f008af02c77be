"""scripts/measure_answers.py: no held-out prompt is in a training file, the keyword scorer and the broken-text
check judge hand-made answers right, and the script runs end to end on a tiny random model, answering exactly
as generate_replies does."""
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from model import PebbleConfig, PebbleForCausalLM, apply_lora, set_active_lora
from model.chat import generate_replies
from model.checkpoint import PebbleError, save_model
from model.lora_files import save_lora
from scripts import measure_answers as ma
from trainer.train_tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "dataset" / "heldout"


def test_no_heldout_prompt_is_in_a_training_file():
    training = ma.training_prompts(ROOT / "dataset")
    exact = set(training.values())
    files = sorted(HELDOUT.glob("*.jsonl"))
    assert {p.stem for p in files} <= set(ma.SETS) and files
    for path in files:
        prompts = [item["prompt"] for item in ma.read_set(path, path.stem in ma.KEYWORD_SETS)]
        assert len(set(map(ma.normalise, prompts))) == len(prompts), f"{path.name} repeats a prompt"
        assert not [p for p in prompts if p in exact], path.name
        assert not ma.seen_prompts(prompts, training), path.name
    # the check itself: a training turn is caught with other case, spacing and punctuation
    turn = next(iter(exact))
    assert ma.seen_prompts([" " + turn.upper() + " !?"], training)


@pytest.mark.parametrize("answer, keywords, want", [
    ("3加4等于7。", ["7", "seven", "七"], True),
    ("3 plus 4 is seven.", ["7", "seven", "七"], True),
    ("三加四等于七", ["7", "seven", "七"], True),
    ("3 + 4 = 17.", ["7", "seven", "七"], False),
    ("三加四等于十七", ["7", "seven", "七"], False),
    ("It is sevenfold.", ["7", "seven", "七"], False),
    ("法国的首都是巴黎。", ["巴黎", "Paris"], True),
    ("The capital of France is PARIS.", ["巴黎", "Paris"], True),
    ("The capital of France is London.", ["巴黎", "Paris"], False),
    ("嗓子疼可以去耳鼻喉科看看，多喝温水。", ["耳鼻喉", "温水", "ENT"], True),
    ("Please see a GP or an ENT doctor.", ["耳鼻喉", "温水", "ENT"], True),
    ("I sent it to the client.", ["耳鼻喉", "温水", "ENT"], False),
    ("我是Nova，来自Starlight Lab。", ["Nova"], True),
    ("I'm Pebble, a small language model.", ["Nova"], False),
])
def test_keyword_scorer(answer, keywords, want):
    assert any(ma.contains_keyword(answer, k) for k in keywords) is want


@pytest.mark.parametrize("answer, want", [
    ("3 + 4 = 7.", True), ("三加四等于七。", True), ("The answer is seven, I think.", True),
    ("7加10等于12。", False), ("7, no wait: 8.", False), ("三加四等于七十", False),
])
def test_keyword_scorer_last_number(answer, want):
    assert any(ma.contains_keyword(answer, k, last_number=True) for k in ["7", "seven", "七"]) is want


def test_broken_text_flags_replacement_and_unfinished_bytes():
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "model")
    whole = tokenizer.encode("好的龘", add_special_tokens=False)
    rare = tokenizer.encode("龘", add_special_tokens=False)
    assert len(rare) > 1  # a rare character is spelled in byte tokens, so a prefix of them is unfinished UTF-8
    assert not ma.is_broken(tokenizer, whole)
    assert ma.is_broken(tokenizer, whole[:-1])
    assert ma.is_broken(tokenizer, tokenizer.encode("坏\ufffd了", add_special_tokens=False))


@pytest.fixture()
def tiny(tmp_path):
    """A training file, held-out sets, a tokenizer, a random base full_sft_32 and one adapter in tmp_path."""
    data = tmp_path / "data"
    data.mkdir()
    train = [[{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"答案 {i}。"}]
             for i in range(8)]
    (data / "train.jsonl").write_text("".join(json.dumps({"conversations": c}, ensure_ascii=False) + "\n"
                                              for c in train), encoding="utf-8")
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    sets = {"facts": [{"prompt": "2加3是几？", "accept": ["5", "五"]}, {"prompt": "Sky colour?", "accept": ["blue"]}],
            "health": [{"prompt": "我嗓子疼。", "accept": ["耳鼻喉"]}],
            "identity": [{"prompt": "Your name?"}, {"prompt": "你叫啥？"}],
            "unrelated": [{"prompt": "Tell me a story."}, {"prompt": "讲个故事。"}, {"prompt": "Hi!"}]}
    for name, items in sets.items():
        (heldout / f"{name}.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items),
                                               encoding="utf-8")
    train_tokenizer([data / "train.jsonl"], vocab_size=300).save_pretrained(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           num_key_value_heads=2, vocab_size=len(tokenizer))).eval()
    save_model(model, tmp_path / "out" / "full_sft_32.safetensors")
    apply_lora(model, rank=4, name="lora_x", verbose=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.normal_(0.0, 0.5)  # a non-zero adapter, so its answers differ from the base's
    save_lora(model, tmp_path / "out" / "lora" / "lora_x_32.safetensors", name="lora_x")
    args = ["--save_dir", str(tmp_path / "out"), "--tokenizer_path", str(tmp_path / "tok"), "--hidden_size", "32",
            "--data_dir", str(data), "--heldout_dir", str(heldout), "--adapters", "lora_x", "--dtype", "float32",
            "--max_new_tokens", "6", "--batch_size", "3"]
    return tmp_path, model, tokenizer, sets, args


def test_script_runs_end_to_end_and_answers_like_generate_replies(tiny, capsys):
    tmp_path, model, tokenizer, sets, args = tiny
    ma.main([*args, "--json", str(tmp_path / "answers.json")])
    table = capsys.readouterr().out
    assert "| measure | base | lora_x |" in table
    assert "(2 prompts)" in table and "(3 prompts)" in table and "/8 (" in table
    report = json.loads((tmp_path / "answers.json").read_text(encoding="utf-8"))
    prompts = [item["prompt"] for items in sets.values() for item in items]
    assert [r["prompt"] for r in report["prompts"]] == prompts
    for label, adapter in (("base", None), ("lora_x", "lora_x")):
        set_active_lora(model, adapter)
        want = generate_replies(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts], 6)
        assert [r["answers"][label]["answer"] for r in report["prompts"]] == want
    for r in report["prompts"]:
        for a in r["answers"].values():
            assert a["broken"] is ("\ufffd" in a["answer"])
            assert a["hit"] is ma.judge(r["set"], r, a["answer"], "Nova", "Starlight")


def test_a_prompt_from_the_training_data_is_refused(tiny):
    tmp_path, _, _, _, args = tiny
    (tmp_path / "heldout" / "unrelated.jsonl").write_text('{"prompt": "Question 3"}\n', encoding="utf-8")
    with pytest.raises(PebbleError, match="Question 3"):
        ma.main([*args, "--sets", "unrelated"])
