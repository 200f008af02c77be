"""Bad input gets one clear error, crashes lose nothing, and files are safe to load."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import AutoTokenizer

from dataset.lm_dataset import PretrainDataset, SFTDataset
from model import PebbleConfig, PebbleForCausalLM
from model.checkpoint import atomic_write, load_model, save_model
from model.common import PebbleError
from model.lora_files import load_lora, save_lora
from model.model_lora import apply_lora
from trainer.config import TrainConfig
from trainer.trainer_utils import train

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=6400)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ROOT / "model")


# ---------------------------------------------------------------- bad input

def test_skip_bad_lines_reports_which(tokenizer, tmp_path):
    good = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    lines = [json.dumps(good), "{broken", json.dumps({"conversations": []}), json.dumps(good)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = SFTDataset(path, tokenizer, 340, skip_bad_lines=True)
    assert len(data) == 2
    assert [s.split(":")[1] for s in data.skipped] == ["2", "3"]


def test_non_utf8_and_empty_files_are_clear_errors(tokenizer, tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(PebbleError, match=r"latin1.jsonl:1: .*UTF-8"):
        PretrainDataset(tmp_path / "latin1.jsonl", tokenizer, 64)
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(PebbleError, match="empty.jsonl holds no usable records"):
        PretrainDataset(tmp_path / "empty.jsonl", tokenizer, 64)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=3), max_leaves=8)
turns = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot", 3]),
                               "content": st.one_of(st.text(max_size=12), st.integers())})
records = st.one_of(json_values, st.fixed_dictionaries({"conversations": st.lists(turns, max_size=4)}),
                    st.fixed_dictionaries({"text": st.one_of(st.text(max_size=20), st.integers())}))
lines = st.one_of(records.map(lambda r: json.dumps(r, ensure_ascii=False)), st.text(max_size=20))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=6), st.sampled_from([SFTDataset, PretrainDataset]))
def test_random_lines_load_or_fail_with_a_pebble_error(tokenizer, tmp_path, content, dataset_cls):
    path = tmp_path / "random.jsonl"
    path.write_text("\n".join(line.replace("\n", " ") for line in content) + "\n", encoding="utf-8")
    try:
        data = dataset_cls(path, tokenizer, 32)
    except PebbleError as e:
        assert "random.jsonl" in str(e)
        return
    for i in range(len(data)):
        assert len(data[i]["input_ids"]) == len(data[i]["labels"]) <= 32


# ---------------------------------------------------------------- wrong files

def test_truncated_or_garbage_safetensors_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    path = save_model(PebbleForCausalLM(PebbleConfig(**TINY)), tmp_path / "full_sft_32.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut_32.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk_32.safetensors").write_bytes(b"\x00" * 100)
    for name in ("cut_32", "junk_32"):
        with pytest.raises(PebbleError, match=name):
            load_model(tmp_path / f"{name}.safetensors")


def test_adapter_for_another_layer_count_is_refused(tmp_path):
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(**{**TINY, "num_hidden_layers": 3}))
    apply_lora(model, rank=4, name="x", verbose=False)
    path = save_lora(model, tmp_path / "x_32.safetensors")
    with pytest.raises(PebbleError, match="num_hidden_layers"):
        load_lora(PebbleForCausalLM(PebbleConfig(**TINY)), path)


# ---------------------------------------------------------------- writes and crashes

def test_failed_write_keeps_the_old_file_and_says_why(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"old")

    def disk_full(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(PebbleError, match="No space left"):
        atomic_write(path, disk_full)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]  # no temp file left behind
    with pytest.raises(PebbleError, match="cannot write"):
        atomic_write(path / "under_a_file" / "x.bin", lambda tmp: None)  # the folder cannot exist


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tokenizer, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"text": f"石头 {i} pebble stone"}) + "\n" for i in range(64)))
    data = PretrainDataset(path, tokenizer, 16)
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(**TINY))
    cfg = TrainConfig(save_dir=str(tmp_path), batch_size=4, dtype="float32", save_interval=2, log_interval=1,
                      learning_rate=1e-3)
    calls = {"n": 0}
    forward = model.forward

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = forward(*args, **kwargs)
        if calls["n"] == 5:
            out.loss = out.loss * float("nan")
        return out

    model.forward = poisoned
    with pytest.raises(PebbleError, match="loss became nan at step 4"):
        train(model, data, cfg, lambda m: None, "run")
    ckpt = tmp_path / "checkpoints" / "run.safetensors"
    assert json.loads(__import__("safetensors").safe_open(str(ckpt), "pt").metadata()["progress"])["step"] == 4


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_adapter(tmp_path):
    """Kill a LoRA run with SIGKILL (possibly mid-save) a few times, resume each time, compare with a clean run."""
    torch.manual_seed(0)
    base = PebbleForCausalLM(PebbleConfig(**TINY))
    save_model(base, tmp_path / "full_sft_32.safetensors")
    data = tmp_path / "chat.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i in range(96):
            conv = [{"role": "user", "content": f"who are you {i}?"}, {"role": "assistant", "content": f"Nova {i}."}]
            f.write(json.dumps({"conversations": conv}) + "\n")
    args = [sys.executable, str(ROOT / "trainer" / "train_lora.py"), "--hidden_size", "32", "--data_path", str(data),
            "--batch_size", "4", "--epochs", "2", "--save_interval", "1", "--dtype", "float32", "--probe_count", "0",
            "--rank", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "full_sft_32.safetensors").symlink_to(tmp_path / "full_sft_32.safetensors")
    subprocess.run([*args, "--save_dir", str(clean)], check=True, env=env, capture_output=True, timeout=300)

    rng = random.Random(0)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "full_sft_32.safetensors").symlink_to(tmp_path / "full_sft_32.safetensors")
    adapter = killed / "lora" / "lora_identity_32.safetensors"
    for _ in range(3):
        proc = subprocess.Popen([*args, "--save_dir", str(killed), "--from_resume", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if adapter.exists():
            load_file(adapter)  # whatever moment it died, the last saved adapter is whole
    final = subprocess.run([*args, "--save_dir", str(killed), "--from_resume", "1"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    want = load_file(clean / "lora" / "lora_identity_32.safetensors")
    got = load_file(adapter)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_tokenizer_larger_than_the_model_vocab_is_refused(tokenizer, tmp_path):
    from trainer.trainer_utils import init_model

    torch.manual_seed(0)
    save_model(PebbleForCausalLM(PebbleConfig(**{**TINY, "vocab_size": 300})), tmp_path / "small_32.safetensors")
    cfg = TrainConfig(save_dir=str(tmp_path), hidden_size=32, from_weight="small")
    with pytest.raises(PebbleError, match="6400 tokens but the model only 300"):
        init_model(cfg, tokenizer)
