"""A careless or hostile command line never trains the wrong thing silently: bad flag values, resuming another
run, data that truncation empties and odd data lines each end in one clear sentence, or in a correct run."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataset.lm_dataset import SFTDataset
from model import PebbleConfig, PebbleForCausalLM
from model.checkpoint import exclusive_run
from model.common import PebbleError
from model.loading import load_tokenizer
from trainer.config import LoRATrainConfig, TrainConfig, parse_config
from trainer.train_lora import parse_blocks, probe_prompts
from trainer.trainer_utils import load_data, train

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=6400)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("model")


def write_conversations(path: Path, count: int, reply: str = "a short reply") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            conv = [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"{reply} {i}"}]
            f.write(json.dumps({"conversations": conv}) + "\n")
    return path


@pytest.mark.parametrize("flag, value", [
    ("learning_rate", float("inf")), ("learning_rate", float("nan")), ("learning_rate", -1.0),
    ("lr_min_ratio", -5.0), ("lr_min_ratio", 2.0), ("warmup_ratio", float("nan")), ("grad_clip", float("inf")),
    ("alpha", -5.0), ("alpha", float("nan")), ("lora_dropout", 1.5), ("lora_dropout", -0.1),
    ("replay_ratio", -1.0), ("replay_weight", float("inf")), ("lora_name", "/tmp/x"), ("lora_name", "../escape"),
    ("lora_name", ""), ("device", "junk"), ("device", "cuda:x"), ("max_steps", -3),
])
def test_a_value_no_run_can_use_is_refused_naming_its_flag(flag, value):
    with pytest.raises(PebbleError, match=f"--{flag}"):
        LoRATrainConfig(**{flag: value}).validate()


def test_sensible_values_pass():
    LoRATrainConfig(alpha=16.0, lora_dropout=0.05, lr_min_ratio=0.0, lora_name="lora_my-task2", device="cpu").validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_on_a_cpu_only_torch_is_one_clear_line():
    with pytest.raises(PebbleError, match="sees no CUDA GPU"):
        TrainConfig(device="cuda").validate()


def test_a_bad_flag_ends_the_script_with_one_line_and_exit_code_1():
    proc = subprocess.run([sys.executable, str(ROOT / "trainer" / "train_lora.py"), "--learning_rate", "inf"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: --learning_rate must be a finite number in (0, 1], got inf"]


def test_truncation_that_leaves_no_target_token_is_refused(tokenizer, tmp_path):
    path = write_conversations(tmp_path / "d.jsonl", 8)
    cfg = TrainConfig(data_path=str(path), max_seq_len=4)
    with pytest.raises(PebbleError, match="--max_seq_len 4"):
        load_data(cfg, SFTDataset, tokenizer)
    assert len(load_data(TrainConfig(data_path=str(path), max_seq_len=64), SFTDataset, tokenizer)) == 8


def tiny_train(tmp_path: Path, data, data_path: Path, **overrides) -> dict:
    cfg = TrainConfig(save_dir=str(tmp_path / "out"), batch_size=4, dtype="float32", save_interval=2,
                      log_interval=1, data_path=str(data_path), **overrides)
    torch.manual_seed(0)
    return train(PebbleForCausalLM(PebbleConfig(**TINY)), data, cfg, lambda m: None, "run")


def test_resume_refuses_other_data_and_other_flags_and_only_rewrites_a_finished_run(tokenizer, tmp_path):
    path = write_conversations(tmp_path / "d.jsonl", 16)
    data = SFTDataset(path, tokenizer, 64)
    assert tiny_train(tmp_path, data, path, max_steps=3)["steps"] == 3
    # Resuming a finished run (say, killed after its last checkpoint) trains nothing and writes the same result.
    written = []
    cfg = TrainConfig(save_dir=str(tmp_path / "out"), batch_size=4, dtype="float32", save_interval=2,
                      log_interval=1, data_path=str(path), max_steps=3)
    torch.manual_seed(0)
    first = PebbleForCausalLM(PebbleConfig(**TINY))
    train(first, data, cfg, lambda m: None, "again")
    torch.manual_seed(1)  # another start: the checkpoint must replace it
    second = PebbleForCausalLM(PebbleConfig(**TINY))
    resumed = dataclasses.replace(cfg, from_resume=1)
    train(second, data, resumed, lambda m: written.append({k: v.clone() for k, v in m.state_dict().items()}),
          "again")
    assert len(written) == 1
    for k, v in first.state_dict().items():
        assert torch.equal(written[0][k], v), k
    write_conversations(tmp_path / "d.jsonl", 16, reply="another reply")  # same file, new content
    with pytest.raises(PebbleError, match="other data"):
        tiny_train(tmp_path, SFTDataset(path, tokenizer, 64), path, max_steps=4, from_resume=1)
    write_conversations(tmp_path / "d.jsonl", 16)
    with pytest.raises(PebbleError, match="--learning_rate 0.0005 \\(now 0.001\\)"):
        tiny_train(tmp_path, data, path, max_steps=3, from_resume=1, learning_rate=1e-3)
    # The same run with more steps to go resumes (max_steps is not part of what must match).
    assert tiny_train(tmp_path, data, path, max_steps=4, from_resume=1)["steps"] == 4


def test_a_nan_loss_before_any_checkpoint_says_nothing_was_written(tokenizer, tmp_path):
    path = write_conversations(tmp_path / "d.jsonl", 16)
    model = PebbleForCausalLM(PebbleConfig(**TINY))
    forward = model.forward

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.loss = out.loss * float("nan")
        return out

    model.forward = poisoned
    cfg = TrainConfig(save_dir=str(tmp_path / "out"), batch_size=4, dtype="float32", data_path=str(path))
    with pytest.raises(PebbleError, match="nothing was written"):
        train(model, SFTDataset(path, tokenizer, 64), cfg, lambda m: None, "run")
    assert not (tmp_path / "out" / "checkpoints" / "run.safetensors").exists()


def test_probe_prompts_pass_over_lines_that_are_no_usable_conversation(tmp_path):
    good = {"conversations": [{"role": "user", "content": "你好吗？"}, {"role": "assistant", "content": "很好"}]}
    english = {"conversations": [{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "ok"}]}
    no_user = {"conversations": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hi"}]}
    huge = {"conversations": [{"role": "user", "content": "x" * 5_000_000}, {"role": "assistant", "content": "y"}]}
    lines = ["", "not json", json.dumps(no_user), json.dumps(huge), json.dumps(good), "   ", json.dumps(english), ""]
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert probe_prompts(path, 2) == ["你好吗？", "How are you?"]


def test_a_second_run_writing_the_same_adapter_stops_and_names_the_first(tmp_path):
    data = write_conversations(tmp_path / "d.jsonl", 32)
    out = tmp_path / "out"
    (out / "lora").mkdir(parents=True)
    (out / "full_sft_256.safetensors").symlink_to(ROOT / "out" / "full_sft_256.safetensors")
    args = [sys.executable, str(ROOT / "trainer" / "train_lora.py"), "--save_dir", str(out), "--data_path", str(data),
            "--replay_data", "none", "--max_steps", "1", "--probe_count", "0", "--lora_name", "twin"]
    with exclusive_run(out / "lora" / "twin_256.safetensors"):  # the first run, still writing
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: another run is writing")
    assert not (out / "lora" / "twin_256.safetensors").exists()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)  # once it is done, the name is free
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_minimind_flags_are_accepted_bare_or_with_a_value(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_lora.py", "--use_compile", "--num_workers", "8", "--use_wandb",
                                      "--wandb_project", "p", "--from_resume"])
    pytest.importorskip("tensorboard")
    cfg = parse_config(LoRATrainConfig, "")
    assert (cfg.compile, cfg.use_wandb, cfg.wandb_project, cfg.from_resume, cfg.num_workers) == (1, 1, "p", 1, 8)
    monkeypatch.setattr(sys, "argv", ["train_lora.py", "--use_wandb", "0"])
    assert parse_config(LoRATrainConfig, "").use_wandb == 0


def test_use_wandb_logs_every_metrics_line_to_the_tracker(tokenizer, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name in ("wandb", "swanlab"):  # make the run use TensorBoard even where another tracker is installed
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr("trainer.tracking.find_spec", lambda name: None if name != "tensorboard" else object())
    path = write_conversations(tmp_path / "d.jsonl", 16)
    summary = tiny_train(tmp_path, SFTDataset(path, tokenizer, 64), path, max_steps=4, use_wandb=1,
                         wandb_project="guards")
    events = EventAccumulator(str(next((tmp_path / "out" / "runs" / "guards").iterdir())))
    events.Reload()
    logged = [json.loads(line) for line in open(tmp_path / "out" / "run.log.jsonl")]
    assert [e.step for e in events.Scalars("loss")] == [r["step"] for r in logged] == [1, 2, 3, 4]
    assert [round(e.value, 4) for e in events.Scalars("loss")] == [r["loss"] for r in logged]
    assert summary["steps"] == 4


@pytest.mark.parametrize("script", ["eval_llm.py", "scripts/serve_openai_api.py"])
def test_eval_and_the_server_refuse_a_bad_device_as_the_trainers_do(script):
    if script.startswith("scripts/serve"):
        pytest.importorskip("fastapi")  # without it the server stops first at that, with its own one-line error
        pytest.importorskip("uvicorn")
    proc = subprocess.run([sys.executable, str(ROOT / script), "--device", "junk"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: --device must be auto, cpu, cuda, cuda:N or mps, got 'junk'"]


@pytest.mark.parametrize("spec", ["5-3", "8", "7-8", "x", "-1"])
def test_lora_blocks_outside_the_model_are_refused(spec):
    with pytest.raises(PebbleError, match="--lora_blocks"):
        parse_blocks(spec, 8)


def test_lora_blocks_adapts_only_those_blocks_and_backward_stops_there():
    from model import apply_lora

    model = PebbleForCausalLM(PebbleConfig(**{**TINY, "num_hidden_layers": 3}))
    apply_lora(model, rank=2, targets="all", verbose=False, blocks=parse_blocks("1-2", 3))
    trained = {n.split(".lora.")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("model.layers.1.", "model.layers.2.")) for n in trained)
    outputs = {}
    for i in (0, 1):
        model.model.layers[i].register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out))
    ids = torch.randint(3, 100, (2, 8))
    model(ids, labels=ids).loss.backward()
    assert outputs[1].requires_grad and not outputs[0].requires_grad  # backward stops at block 1
