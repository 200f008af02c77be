"""eval_llm.py on a tiny model and two adapters: the chat swaps adapters live and answers exactly as
generate_replies does, greedy scripted runs repeat themselves, and the evaluation numbers equal a direct
computation from the logits."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

import eval_llm
from dataset.lm_dataset import SFTDataset
from model import PebbleConfig, PebbleForCausalLM, apply_lora, set_active_lora
from model.chat import generate_replies, token_bytes
from model.checkpoint import save_model, state_dict_to_save
from model.common import run_cli
from model.lora_files import lora_state_dict, save_lora
from trainer.train_tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("lora_alpha", "lora_beta")
WORDS = ["stone", "river", "小石头", "河流", "hello", "你好", "light", "光"]


def tiny_base(vocab_size: int, seed: int) -> PebbleForCausalLM:
    """A random base with weights large enough that its greedy replies are not all whitespace."""
    torch.manual_seed(seed)
    config = PebbleConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          vocab_size=vocab_size)
    model = PebbleForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """Tokenizer, base full_sft_32 and adapters lora_alpha/lora_beta (non-zero B) in a temp dir, plus eval data."""
    d = tmp_path_factory.mktemp("eval_llm")
    conversations = []
    for i in range(10):
        conv = [{"role": "user", "content": f"{WORDS[i % 8]} {i}?"},
                {"role": "assistant", "content": f"{WORDS[(i + 3) % 8]} {i}!"}]
        if i % 4 == 1:
            conv.insert(0, {"role": "system", "content": "be brief"})
        if i % 3 == 2:
            conv += [{"role": "user", "content": "and then?"},
                     {"role": "assistant", "content": f"{WORDS[i % 8]} again"}]
        conversations.append(conv)
    data = d / "eval.jsonl"
    data.write_text("".join(json.dumps({"conversations": c}, ensure_ascii=False) + "\n" for c in conversations),
                    encoding="utf-8")
    train_tokenizer([data], vocab_size=300).save_pretrained(d / "tok")
    tokenizer = AutoTokenizer.from_pretrained(d / "tok")
    out = d / "out"
    model = tiny_base(len(tokenizer), seed=0)
    save_model(model, out / "full_sft_32.safetensors")  # float32: the script sees exactly these weights
    g = torch.Generator().manual_seed(1)
    for name in ADAPTERS:
        apply_lora(model, rank=4, name=name, verbose=False)
        with torch.no_grad():
            for p_name, p in model.named_parameters():
                if f".lora.{name}." in p_name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        save_lora(model, out / "lora" / f"{name}_32.safetensors", name=name)
    other = tiny_base(len(tokenizer), seed=5)  # an adapter trained on some other base
    apply_lora(other, rank=4, name="lora_other", verbose=False)
    save_lora(other, out / "lora" / "lora_other_32.safetensors")
    set_active_lora(model, None)
    common = ["--save_dir", str(out), "--tokenizer_path", str(d / "tok"), "--hidden_size", "32", "--device", "cpu",
              "--dtype", "float32", "--temperature", "0", "--max_new_tokens", "12"]
    return SimpleNamespace(dir=d, data=data, conversations=conversations, tokenizer=tokenizer, model=model,
                           common=common)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A model this small runs fastest on one thread, and a second one stalls every op when the CPU is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_script(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess:
    """Run eval_llm.py from another working directory."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "eval_llm.py"), *args], input=stdin, cwd=cwd, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def replies_with(tiny, adapter, conversations, max_new_tokens=12) -> list[str]:
    """What generate_replies answers with only `adapter` active (None: the base)."""
    set_active_lora(tiny.model, adapter)
    try:
        return generate_replies(tiny.model, tiny.tokenizer, conversations, max_new_tokens=max_new_tokens)
    finally:
        set_active_lora(tiny.model, None)


def chat_replies(stdout: str) -> list[tuple[str, str]]:
    """(label, reply) for each answered prompt in a chat transcript ("you: " precedes every input), without
    the speed line."""
    found = []
    for chunk in stdout.split("you: ")[1:]:
        label, sep, text = chunk.partition("> ")
        if sep and label.replace("_", "").replace("+", "").isalnum():
            found.append((label, re.sub(r"\n\[\d+ tokens, [\d.]+ tokens/s\]\n$", "", text).strip()))
    return found


def test_chat_swaps_adapters_live_and_answers_like_generate_replies(tiny):
    question = "stone 0?"
    stdin = f"{question}\n/lora beta\n{question}\n/lora off\n{question}\n/lora nosuch\n/lora list\n/exit\n"
    proc = run_script(*tiny.common, "--lora_weight", "lora_alpha,lora_beta", "--historys", "0", stdin=stdin,
                      cwd=tiny.dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = chat_replies(proc.stdout)
    conv = [[{"role": "user", "content": question}]]
    want = [(label, replies_with(tiny, adapter, conv)[0])
            for label, adapter in (("lora_alpha", "lora_alpha"), ("lora_beta", "lora_beta"), ("base", None))]
    assert got == want
    assert len({reply for _, reply in want}) == 3  # the adapters really change the answer
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nosuch" in errors[0] and "Traceback" not in proc.stderr
    assert "* base (no adapter)\n  lora_alpha\n  lora_beta" in proc.stdout  # listed after the error: still alive


def test_chat_carries_historys_messages_and_reset_forgets(tiny):
    lines = iter(["river 1?", "light 2?", "hello 3?", "/reset", "你好 4?"])

    def read(prompt: str) -> str:
        out.write(prompt)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    eval_llm.run_chat(tiny.model, tiny.tokenizer, eval_llm.GenOptions(12, temperature=0.0), historys=2,
                      show_speed=True, save_dir=tiny.dir / "out", read=read, out=out)
    got = [reply for _, reply in chat_replies(out.getvalue())]
    user = [{"role": "user", "content": c} for c in ("river 1?", "light 2?", "hello 3?", "你好 4?")]
    r1 = replies_with(tiny, None, [[user[0]]])[0]
    r2 = replies_with(tiny, None, [[user[0], {"role": "assistant", "content": r1}, user[1]]])[0]
    r3 = replies_with(tiny, None, [[user[1], {"role": "assistant", "content": r2}, user[2]]])[0]
    r4 = replies_with(tiny, None, [[user[3]]])[0]  # after /reset: no history
    assert got == [r1, r2, r3, r4] and len(set(got)) == 4
    assert out.getvalue().count(" tokens/s]\n") == 4


def test_greedy_prompts_repeat_and_compare_shows_every_variant(tiny, capsys):
    prompts = ["stone 0?", "河流 3?"]
    args = [*tiny.common, "--lora_weight", "lora_alpha,lora_beta", "--compare", "--json",
            "--prompt", prompts[0], "--prompt", prompts[1]]
    proc = run_script(*args, cwd=tiny.dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    eval_llm.main(args)  # a second run, in this process
    assert json.loads(capsys.readouterr().out) == json.loads(proc.stdout)
    answers = json.loads(proc.stdout)["answers"]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    for label, adapter in (("base", None), ("lora_alpha", "lora_alpha"), ("lora_beta", "lora_beta")):
        assert [a["replies"][label] for a in answers] == replies_with(tiny, adapter, conversations)
    eval_llm.main([*tiny.common, "--lora_weight", "beta", "--prompt", prompts[0]])  # short name, readable block
    text = capsys.readouterr().out
    assert text.startswith(f"you: {prompts[0]}\nlora_beta> {answers[0]['replies']['lora_beta']}")


def test_minimind_pth_base_and_adapter_answer_like_ours(tiny, capsys):
    minimind = tiny.dir / "minimind"  # MiniMind's layout: plain state_dicts, adapters next to the base
    minimind.mkdir(exist_ok=True)
    torch.save(state_dict_to_save(tiny.model), minimind / "full_sft_32.pth")
    torch.save(lora_state_dict(tiny.model, "lora_alpha"), minimind / "lora_alpha_32.pth")
    args = [a if a != str(tiny.dir / "out") else str(minimind) for a in tiny.common]
    eval_llm.main([*args, "--lora_weight", "alpha", "--compare", "--json", "--prompt", "stone 0?"])
    replies = json.loads(capsys.readouterr().out)["answers"][0]["replies"]
    conversation = [[{"role": "user", "content": "stone 0?"}]]
    assert replies == {"base": replies_with(tiny, None, conversation)[0],
                       "lora_alpha": replies_with(tiny, "lora_alpha", conversation)[0]}


def reference_loss(model, dataset) -> tuple[float, int]:
    """Token-weighted cross-entropy over the assistant tokens, one unpadded conversation at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(dataset)):
            ids, labels = (torch.tensor([dataset[i][k]]) for k in ("input_ids", "labels"))
            logits = model(ids).logits[0]  # (T, V)
            total += F.cross_entropy(logits[:-1], labels[0, 1:], ignore_index=-100, reduction="sum").item()
            count += int((labels[0, 1:] != -100).sum())
    return total / count, count


def test_eval_loss_and_expect_rate_equal_a_direct_computation(tiny, capsys):
    prompts = [c[:next(i for i, t in enumerate(c) if t["role"] == "user") + 1] for c in tiny.conversations]
    base_replies = replies_with(tiny, None, prompts, max_new_tokens=64)
    # A word that some base replies contain and others do not, given in another case than it appears.
    pieces = sorted({w for r in base_replies for w in re.findall(r"[A-Za-z]{3,}", r)})
    word = next(w for w in pieces if 0 < sum(w in r for r in base_replies) < len(base_replies))
    eval_llm.main([*tiny.common, "--lora_weight", "lora_alpha,lora_beta", "--eval_data", str(tiny.data),
                   "--expect", word.upper(), "--json"])
    report = json.loads(capsys.readouterr().out)["eval"]
    dataset = SFTDataset(tiny.data, tiny.tokenizer, 340)
    for label, adapter in (("base", None), ("lora_alpha", "lora_alpha"), ("lora_beta", "lora_beta")):
        set_active_lora(tiny.model, adapter)
        loss, count = reference_loss(tiny.model, dataset)
        set_active_lora(tiny.model, None)
        got = report["results"][label]
        assert got["tokens"] == count
        assert got["loss"] == pytest.approx(loss, abs=1e-4)
        assert got["perplexity"] == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-4)
        replies = base_replies if adapter is None else replies_with(tiny, adapter, prompts, max_new_tokens=64)
        assert got["expect_rate"] == sum(word.lower() in r.lower() for r in replies) / len(replies)
    assert report["results"]["lora_alpha"]["loss"] != report["results"]["base"]["loss"]
    eval_llm.main([*tiny.common, "--lora_weight", "lora_alpha", "--eval_data", str(tiny.data), "--batch_size", "3"])
    table = capsys.readouterr().out
    assert "perplexity" in table and "\nbase " in table and "\nlora_alpha " in table


def test_a_missing_adapter_is_one_error_line_and_exit_1(tiny):
    proc = run_script(*tiny.common, "--lora_weight", "nosuch", "--prompt", "hi", cwd=tiny.dir)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("args, message", [
    (["--weight", "missing"], "no weights named 'missing'"),
    (["--lora_weight", "lora_other"], "other base weights"),
    (["--eval_data", "BAD"], "eval_bad.jsonl:2: not valid JSON"),
    (["--historys", "3"], "must be even"),
    (["--max_new_tokens", str(10 ** 12)], "does not fit the model's 32768 positions"),
    (["--temperature", "nan"], "--temperature must be a number >= 0"),
    (["--temperature", "inf"], "--temperature must be a number >= 0"),
])
def test_user_mistakes_end_in_one_error_line(tiny, args, message):
    bad = tiny.dir / "eval_bad.jsonl"
    bad.write_text(tiny.data.read_text(encoding="utf-8").splitlines()[0] + "\n{oops\n", encoding="utf-8")
    args = [str(bad) if a == "BAD" else a for a in args]
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: eval_llm.main([*tiny.common, *args, "--prompt", "hi"]))
    assert str(exit_.value.code).startswith("error: ") and message in str(exit_.value.code)


def test_a_tiny_temperature_answers_as_greedy_decoding_does(tiny, capsys):
    answers = []
    for temperature in ("0", "1e-300", "1e-45"):
        eval_llm.main([*tiny.common, "--temperature", temperature, "--json", "--prompt", "stone 0?", "--prompt", "光"])
        answers.append(json.loads(capsys.readouterr().out)["answers"])
    assert answers[1] == answers[0] and answers[2] == answers[0]


def test_the_streamer_never_prints_half_a_character():
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "model")
    table = token_bytes(tokenizer)  # (checked against the tokenizer's own decoder in test_chat_encoding.py)
    byte_id = {t[0]: i for i, t in enumerate(table) if len(t) == 1}
    zhong = [byte_id[b] for b in "中".encode("utf-8")]  # one character, three single-byte tokens
    for ids, shown in ((zhong, "中"), (zhong[:2], "")):  # whole, and cut short (the reply ran out of tokens)
        out = io.StringIO()
        streamer = eval_llm.ReplyStreamer(tokenizer, out)
        streamer.put(torch.tensor([[1, 2]]))  # the prompt
        written = []
        for i in ids:
            streamer.put(torch.tensor([i]))
            written.append(out.getvalue())
        streamer.end()
        assert written[:2] == ["", ""] and out.getvalue() == shown


def test_a_prompts_file_with_a_byte_order_mark_reads_as_without(tiny, tmp_path):
    (tmp_path / "prompts.txt").write_bytes("\ufeffstone 0?\n河流 3?\n".encode("utf-8"))
    assert eval_llm.read_prompts([], str(tmp_path / "prompts.txt")) == ["stone 0?", "河流 3?"]


def test_load_from_a_transformers_export_answers_and_evaluates_like_our_weights(tiny, capsys):
    from scripts.convert_model import export_hf

    folder = export_hf(tiny.model, tiny.dir / "hf", tokenizer_dir=tiny.dir / "tok")
    common = [a for a in tiny.common if a != "--tokenizer_path" and a != str(tiny.dir / "tok")]
    report = {}
    for load_from in ("model", str(folder)):  # MiniMind's flag: its native weights, or a transformers folder
        eval_llm.main([*common, "--load_from", load_from, "--tokenizer_path", str(tiny.dir / "tok"), "--json",
                       "--compare", "--prompt", "stone 0?", "--prompt", "光", "--eval_data", str(tiny.data)])
        report[load_from] = json.loads(capsys.readouterr().out)
    ours, theirs = report["model"], report[str(folder)]
    assert theirs["answers"] == ours["answers"]
    assert theirs["eval"]["results"]["base"]["loss"] == pytest.approx(ours["eval"]["results"]["base"]["loss"],
                                                                      abs=1e-4)
    for args, message in ((["--load_from", str(tiny.dir / "tok")], "has none"),  # a folder without config.json
                          (["--load_from", str(folder), "--lora_weight", "alpha"], "--merge NAME")):
        with pytest.raises(SystemExit) as exit_:
            run_cli(lambda: eval_llm.main([*tiny.common, *args, "--prompt", "hi"]))
        assert str(exit_.value.code).startswith("error: ") and message in str(exit_.value.code)
        assert "\n" not in str(exit_.value.code)
