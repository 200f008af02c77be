"""On a CUDA GPU (every test is skipped without one): the model, its adapters and the trainers give there what
they give on the CPU, and each trainer runs in each dtype it offers."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.chat import encode_prompt, generate_replies
from model.checkpoint import load_model
from model.loading import load_tokenizer
from model.lora_files import load_lora
from model.model_lora import apply_lora, lora_disabled
from model.model_pebble import PebbleConfig, PebbleForCausalLM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "out" / "full_sft_256.safetensors"
PROMPTS = ["Who are you?", "你好，请介绍一下你自己。", "What is the capital of France?", "Give me a tip for sleeping well."]


@pytest.fixture(autouse=True)
def exact_float32_products():
    """TF32 would round float32 products on the GPU to 10 mantissa bits; the comparisons want float32 itself."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_loss_and_adapter_gradients_on_cuda_match_the_cpu():
    torch.manual_seed(0)
    cpu = PebbleForCausalLM(PebbleConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, vocab_size=300))
    apply_lora(cpu, rank=4, targets="all", verbose=False)
    for name, p in cpu.named_parameters():
        if name.endswith("B.weight"):
            torch.nn.init.normal_(p, std=0.02)  # B starts at zero: give A a gradient too
    gpu = copy.deepcopy(cpu).cuda()
    ids = torch.randint(3, 300, (3, 40))
    results = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        loss = model(ids.to(device), labels=ids.to(device)).loss
        loss.backward()
        grads = {n: p.grad.cpu() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads))
    (loss_cpu, grads_cpu), (loss_gpu, grads_gpu) = results
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-5)
    assert grads_gpu.keys() == grads_cpu.keys() and len(grads_cpu) == 2 * 7 * 2  # A and B, 7 linears, 2 blocks
    for name, grad in grads_cpu.items():
        torch.testing.assert_close(grads_gpu[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_greedy_replies_on_cuda_are_the_cpus():
    if not BASE.is_file():
        pytest.skip(f"{BASE} is missing")
    tokenizer = load_tokenizer(ROOT / "model")
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    cpu = load_model(BASE).eval()
    gpu = load_model(BASE, "cuda").eval()
    assert generate_replies(gpu, tokenizer, conversations, max_new_tokens=48) == \
        generate_replies(cpu, tokenizer, conversations, max_new_tokens=48)


def run_script(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def base_dir(tmp_path: Path) -> Path:
    """A save_dir holding the shipped base (linked), for trainers that write next to it."""
    if not BASE.is_file():
        pytest.skip(f"{BASE} is missing")
    (tmp_path / BASE.name).symlink_to(BASE)
    return tmp_path


def adapter_effect(adapter: Path, ids: torch.Tensor) -> torch.Tensor:
    """The adapter's change to the shipped base's logits on ids, computed on the CPU in float32."""
    model = load_model(BASE).eval()
    load_lora(model, adapter)
    with torch.no_grad():
        with lora_disabled(model):
            before = model(ids).logits
        return model(ids).logits - before


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_an_adapter_trained_on_cuda_does_what_the_cpus_does(tmp_path, dtype):
    """Five steps of the main job (replay and KL term included) on the GPU and on the CPU in float32: the two
    adapters change the base's logits alike; float16 runs under the gradient scaler."""
    save = base_dir(tmp_path)
    job = ["--save_dir", str(save), "--max_steps", "5", "--probe_count", "1", "--save_interval", "3"]
    out = run_script("trainer/train_lora.py", *job, "--device", "cuda", "--dtype", dtype, "--lora_name", "lora_gpu")
    assert "wrote" in out and "after 5 steps" in out
    run_script("trainer/train_lora.py", *job, "--device", "cpu", "--dtype", "float32", "--lora_name", "lora_cpu")
    tokenizer = load_tokenizer(ROOT / "model")
    ids = torch.tensor([encode_prompt(tokenizer, [{"role": "user", "content": PROMPTS[0]}])])
    gpu, cpu = (adapter_effect(save / "lora" / f"lora_{n}_256.safetensors", ids) for n in ("gpu", "cpu"))
    assert cpu.norm() > 0
    tolerance = {"float32": 0.02, "bfloat16": 0.15, "float16": 0.15}[dtype]
    assert (gpu - cpu).norm() / cpu.norm() < tolerance


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_pretraining_and_full_sft_run_on_cuda(tmp_path, dtype):
    """A few steps of each full-weight stage on the GPU (fused AdamW there): finite losses, moved weights."""
    small = ["--save_dir", str(tmp_path), "--hidden_size", "64", "--num_hidden_layers", "2", "--device", "cuda",
             "--dtype", dtype, "--max_steps", "4", "--batch_size", "8"]
    run_script("trainer/train_pretrain.py", *small, "--data_path", "dataset/pretrain_demo.jsonl")
    run_script("trainer/train_full_sft.py", *small, "--data_path", "dataset/sft_demo.jsonl")
    pretrain, sft = (load_model(tmp_path / f"{n}_64.safetensors") for n in ("pretrain", "full_sft"))
    for model in (pretrain, sft):
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(pretrain.state_dict().values(), sft.state_dict().values()))
