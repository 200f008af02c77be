"""End to end: tokenizer -> pretrain -> full SFT -> LoRA, each script run for a few steps into a temp dir;
resume after a crash ends where an uninterrupted run does; two processes equal one with the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dataset.lm_dataset import PretrainDataset
from model.checkpoint import load_model
from model.common import PebbleError
from model.lora_files import load_lora, read_lora
from trainer.config import TrainConfig
from trainer.train_tokenizer import train_tokenizer
from trainer.trainer_utils import init_model, train

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--hidden_size", "32", "--num_hidden_layers", "2", "--batch_size", "4", "--dtype", "float32"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A temp dir with tiny pretrain/SFT/LoRA data and a small tokenizer trained on it."""
    d = tmp_path_factory.mktemp("e2e")
    words = ["stone", "river", "小石头", "河流", "hello", "你好", "light", "光"]
    with open(d / "pretrain.jsonl", "w", encoding="utf-8") as f:
        for i in range(64):
            text = " ".join(words[(i + j) % len(words)] for j in range(12)) + f" {i}。"
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    with open(d / "sft.jsonl", "w", encoding="utf-8") as f:
        for i in range(48):
            conv = [{"role": "user", "content": f"{words[i % 8]} {i}?"},
                    {"role": "assistant", "content": f"{words[(i + 3) % 8]} {i}!"}]
            f.write(json.dumps({"conversations": conv}, ensure_ascii=False) + "\n")
    tokenizer = train_tokenizer([d / "pretrain.jsonl", d / "sft.jsonl"], vocab_size=300)
    tokenizer.save_pretrained(d / "tok")
    return d


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a trainer script from another working directory (paths must not depend on it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "trainer" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_every_stage_runs_and_writes_what_it_should(workdir):
    out = workdir / "out"
    common = [*SMALL, "--save_dir", str(out), "--tokenizer_path", str(workdir / "tok")]
    run("train_pretrain.py", *common, "--data_path", str(workdir / "pretrain.jsonl"), "--max_steps", "6",
        "--save_interval", "3", cwd=workdir)
    pretrain = load_model(out / "pretrain_32.safetensors")
    assert pretrain.config.hidden_size == 32 and pretrain.config.num_hidden_layers == 2
    log = [json.loads(line) for line in open(out / "pretrain_32.log.jsonl")]
    assert log[-1]["step"] == 6 and all(r["loss"] > 0 for r in log)

    run("train_full_sft.py", *common, "--data_path", str(workdir / "sft.jsonl"), "--max_steps", "4", cwd=workdir)
    sft = load_model(out / "full_sft_32.safetensors")
    changed = [k for k, v in sft.state_dict().items() if not torch.equal(v, pretrain.state_dict()[k])]
    assert changed  # SFT started from the pretrained weights and moved them

    proc = run("train_lora.py", *common, "--data_path", str(workdir / "sft.jsonl"), "--max_steps", "4",
               "--rank", "4", cwd=workdir)
    assert "Q:" in proc.stdout and "LoRA 'lora_identity'" in proc.stdout
    adapter = out / "lora" / "lora_identity_32.safetensors"
    keys = set(load_file(adapter))
    modules = [f"self_attn.{m}" for m in ("q_proj", "k_proj", "v_proj", "o_proj")]
    modules += [f"mlp.{m}" for m in ("gate_proj", "up_proj", "down_proj")]
    assert keys == {f"model.layers.{i}.{m}.lora.{ab}.weight" for i in range(2) for m in modules for ab in "AB"}
    ckpt = load_file(out / "checkpoints" / "lora_identity_32.safetensors")
    assert not any("embed_tokens" in k or k.endswith("mlp.up_proj.weight") for k in ckpt)  # no copy of the base
    assert load_lora(sft, adapter) == "lora_identity"
    _, meta = read_lora(adapter)
    assert meta["rank"] == 4 and meta["data"] == "sft.jsonl" and meta["base_weight"] == "full_sft"

    # Differential LoRA: a second adapter trained on top of the base with the first merged in belongs to
    # that merged base, so the plain base refuses it; continuing an adapter keeps its shape.
    run("train_lora.py", *common, "--data_path", str(workdir / "sft.jsonl"), "--max_steps", "2", "--rank", "4",
        "--lora_name", "lora_second", "--preset_lora", "lora_identity", cwd=workdir)
    second = out / "lora" / "lora_second_32.safetensors"
    assert read_lora(second)[1]["preset_lora"] == "lora_identity"
    with pytest.raises(PebbleError, match="fingerprint"):
        load_lora(load_model(out / "full_sft_32.safetensors"), second)
    run("train_lora.py", *common, "--data_path", str(workdir / "sft.jsonl"), "--max_steps", "2",
        "--lora_name", "lora_more", "--lora_checkpoint", str(adapter), cwd=workdir)
    assert read_lora(out / "lora" / "lora_more_32.safetensors")[1]["rank"] == 4


def test_a_user_mistake_is_one_line_not_a_traceback(workdir):
    proc = subprocess.run([sys.executable, str(ROOT / "trainer" / "train_pretrain.py"), "--data_path",
                           str(workdir / "missing.jsonl"), "--tokenizer_path", str(workdir / "tok")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "missing.jsonl" in proc.stderr and "Traceback" not in proc.stderr


class Crash(Exception):
    pass


def tiny_run(workdir: Path, save_dir: Path, **overrides) -> TrainConfig:
    return TrainConfig(save_dir=str(save_dir), hidden_size=32, num_hidden_layers=2, batch_size=4, dtype="float32",
                       save_interval=3, log_interval=1, max_seq_len=16, tokenizer_path=str(workdir / "tok"),
                       data_path=str(workdir / "pretrain.jsonl"), **overrides)


def test_resume_after_a_crash_ends_where_an_uninterrupted_run_does(workdir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "tok")
    data = PretrainDataset(workdir / "pretrain.jsonl", tokenizer, 16)

    def fresh(cfg):
        torch.manual_seed(0)
        return init_model(cfg, tokenizer)

    cfg = tiny_run(workdir, tmp_path / "a", epochs=2)  # 64 samples / 4 = 16 steps per epoch
    whole = fresh(cfg)
    train(whole, data, cfg, lambda m: None, "run")

    cfg = tiny_run(workdir, tmp_path / "b", epochs=2)
    crashed = fresh(cfg)
    saves = []

    def crash_after_second_save(m):
        saves.append(1)
        if len(saves) == 2:
            raise Crash  # dies right after the step-6 checkpoint was written

    with pytest.raises(Crash):
        train(crashed, data, cfg, crash_after_second_save, "run")
    resumed = fresh(tiny_run(workdir, tmp_path / "b", epochs=2))
    summary = train(resumed, data, tiny_run(workdir, tmp_path / "b", epochs=2, from_resume=1), lambda m: None, "run")
    assert summary["steps"] == 32
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_compiled_training_follows_the_eager_run(workdir, tmp_path):
    """--compile 1 trains the same model: after a few steps the weights agree with an eager run's."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "tok")
    data = PretrainDataset(workdir / "pretrain.jsonl", tokenizer, 16)
    finals = []
    for compiled in (0, 1):
        cfg = tiny_run(workdir, tmp_path / str(compiled), max_steps=4, compile=compiled)
        torch.manual_seed(0)
        model = init_model(cfg, tokenizer)
        train(model, data, cfg, lambda m: None, "run")
        finals.append(model.state_dict())
    for key, eager in finals[0].items():
        torch.testing.assert_close(finals[1][key], eager, atol=1e-5, rtol=1e-4, msg=key)


def test_two_processes_match_one_with_the_same_global_batch(workdir, tmp_path):
    common = ["--hidden_size", "32", "--num_hidden_layers", "2", "--dtype", "float32", "--max_seq_len", "16",
              "--tokenizer_path", str(workdir / "tok"), "--data_path", str(workdir / "pretrain.jsonl"),
              "--max_steps", "5", "--device", "cpu"]
    run("train_pretrain.py", *common, "--batch_size", "8", "--save_dir", str(tmp_path / "one"), cwd=workdir)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    proc = subprocess.run([*torchrun, str(ROOT / "trainer" / "train_pretrain.py"), *common, "--batch_size", "4",
                           "--save_dir", str(tmp_path / "two")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = load_file(tmp_path / "one" / "pretrain_32.safetensors")
    two = load_file(tmp_path / "two" / "pretrain_32.safetensors")
    for k in one:
        torch.testing.assert_close(one[k].float(), two[k].float(), atol=2e-3, rtol=1e-3)  # fp16 files


def test_replay_loss_is_task_cross_entropy_plus_kl_to_the_base_on_replayed_rows():
    from torch.nn import functional as F

    from model import PebbleConfig, PebbleForCausalLM, apply_lora, lora_disabled
    from trainer.train_lora import replay_distillation_loss

    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           num_key_value_heads=2, vocab_size=50)).eval()
    apply_lora(model, rank=4, verbose=False)
    ids = torch.randint(3, 50, (4, 10))
    labels = ids.clone()
    labels[:, :4] = -100  # a prompt, then the reply
    batch = {"input_ids": ids, "labels": labels, "source": torch.tensor([0, 1, 0, 1])}
    loss_fn = replay_distillation_loss(model)
    # B = 0: the adapted model is the base, so replayed rows cost nothing and pull nowhere.
    replayed = {k: v[[1, 3]] for k, v in batch.items()}
    loss = loss_fn(model, replayed)
    loss.backward()
    assert abs(loss.item()) < 1e-6
    assert all(p.grad is None or p.grad.abs().max() < 1e-6 for p in model.parameters() if p.requires_grad)
    # A trained (random) adapter: compare with the definition, written out.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.copy_(torch.randn_like(p) * 0.2)
    with torch.no_grad():
        adapted = model(ids).logits[:, :-1].log_softmax(-1)
        with lora_disabled(model):
            base = model(ids).logits[:, :-1].log_softmax(-1)
    targets, keep = labels[:, 1:], labels[:, 1:] != -100
    ce = F.nll_loss(adapted[[0, 2]][keep[[0, 2]]], targets[[0, 2]][keep[[0, 2]]], reduction="sum")
    p_log, q_log = base[[1, 3]][keep[[1, 3]]], adapted[[1, 3]][keep[[1, 3]]]
    kl = (p_log.exp() * (p_log - q_log)).sum()
    assert kl > 0
    expected = (ce + kl) / keep.sum()
    assert torch.allclose(loss_fn(model, batch).detach(), expected, rtol=1e-5)


def test_reply_positions_count_from_zero_in_every_reply():
    from trainer.train_lora import reply_positions

    keep = torch.tensor([[0, 1, 1, 1, 0, 0, 1, 1], [1, 1, 0, 1, 0, 1, 1, 1]], dtype=torch.bool)
    expected = []
    for row in keep.tolist():  # written out: a run of True is one reply
        index, out = 0, []
        for k, was in zip(row, [False] + row[:-1]):
            index = (index + 1 if was else 0) if k else 0
            out.append(index)
        expected.append(out)
    assert torch.equal(reply_positions(keep)[keep], torch.tensor(expected)[keep])


def test_replay_lead_tokens_weigh_the_first_tokens_of_each_replayed_reply():
    from torch.nn import functional as F

    from model import PebbleConfig, PebbleForCausalLM, apply_lora, lora_disabled
    from trainer.train_lora import replay_distillation_loss

    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           num_key_value_heads=2, vocab_size=50)).eval()
    apply_lora(model, rank=4, verbose=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.copy_(torch.randn_like(p) * 0.2)
    ids = torch.randint(3, 50, (2, 12))
    labels = ids.clone()
    labels[:, :3] = -100  # prompt, a reply of 4 tokens, a second prompt, a reply of 3
    labels[:, 7:9] = -100
    batch = {"input_ids": ids, "labels": labels, "source": torch.tensor([1, 1])}
    with torch.no_grad():
        adapted = model(ids).logits[:, :-1].log_softmax(-1)
        with lora_disabled(model):
            base = model(ids).logits[:, :-1].log_softmax(-1)
    keep = labels[:, 1:] != -100
    kl = (base.exp() * (base - adapted)).sum(-1)  # (B, T-1)
    # Positions 2..5 predict the first reply (tokens 3..6), 8..10 the second (9..11): the first two of each lead.
    lead = torch.zeros_like(keep)
    lead[:, [2, 3, 8, 9]] = True
    expected = 2.0 * (kl * torch.where(lead, 5.0, 1.0))[keep].sum() / keep.sum()
    loss = replay_distillation_loss(model, weight=2.0, lead_tokens=2, lead_weight=5.0)(model, batch)
    assert torch.allclose(loss.detach(), expected, rtol=1e-5)


@pytest.mark.parametrize("fast", [False, True])
def test_loss_and_adapter_gradients_do_not_depend_on_the_pad_width(fast):
    """fp32 batches are padded only to their longest sample (trainer.runtime.pad_multiple), bf16 ones to a multiple
    of 16: right padding under the causal mask must change neither the loss nor the gradients, on the plain
    modules or the fast paths the trainers switch on."""
    from dataset.lm_dataset import PadCollator
    from model import PebbleConfig, PebbleForCausalLM, apply_lora
    from model.fast_paths import enable_fast_paths
    from trainer.runtime import pad_multiple
    from trainer.train_lora import replay_distillation_loss

    assert pad_multiple(torch.float32) == 1 and pad_multiple(torch.bfloat16) > 1
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           num_key_value_heads=2, vocab_size=50))
    apply_lora(model, rank=4, verbose=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.copy_(torch.randn_like(p) * 0.2)
    if fast:
        assert enable_fast_paths(model)
    samples = []
    for length, source in [(9, 0), (13, 1), (6, 1)]:
        ids = torch.randint(3, 50, (length,)).tolist()
        samples.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:], "source": source})
    losses = {"lm": lambda net, b: net(b["input_ids"], labels=b["labels"], loss_only=True).loss,
              "replay": replay_distillation_loss(model, lead_tokens=2, lead_weight=3.0)}
    for name, loss_fn in losses.items():
        results = []
        for multiple in (1, 16):
            batch = PadCollator(pad_id=0, pad_multiple=multiple)(samples)
            assert batch["input_ids"].shape[1] == (13 if multiple == 1 else 16)
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            loss.backward()
            grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
            results.append((loss.detach(), grads))
        (loss_1, grads_1), (loss_16, grads_16) = results
        assert torch.allclose(loss_1, loss_16, rtol=1e-5), name
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads_1, grads_16)), name
