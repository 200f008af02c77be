"""Every fast path against the plain path it replaces (bit for bit where the maths is the same, else within the
tolerance stated), and the repo working with all of them off (PEBBLE_FAST_PATHS=0)."""
import copy

import pytest
import torch
from torch import nn

from model import PebbleConfig, PebbleForCausalLM, apply_lora, set_active_lora
from model.fast_decode import bind_forward, hold_weights_column_major
from model.fast_lora import FusedLoRALinear, use_fused_lora
from model.fast_paths import enable_fast_paths
from model.model_lora import LoRALinear
from model.model_pebble import Attention
from test_lora import X, train_steps

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=97)
FP32 = dict(atol=1e-5, rtol=1e-5)  # another order of the same float32 sums
BF16 = dict(atol=2e-2, rtol=2e-2)  # bf16 products


def model_with_adapter(seed: int = 0, **lora) -> PebbleForCausalLM:
    """A tiny model with one adapter whose B is random, so the adapter changes the output."""
    torch.manual_seed(seed)
    model = PebbleForCausalLM(PebbleConfig(**TINY)).eval()
    apply_lora(model, rank=4, alpha=8, targets="all", verbose=False, **lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name and ".B." in name:
                p.normal_(0, 0.1)
    return model


def layer_with_adapter(cls: type) -> LoRALinear:
    torch.manual_seed(0)
    layer = cls(48, 40)
    layer.weight.requires_grad_(False)
    adapter = layer.add_adapter("t", rank=4, alpha=8)
    layer.active = {"t": 0.5}  # scale 0.5 * 8 / 4 = 1
    with torch.no_grad():
        adapter.B.weight.normal_(0, 0.1)
    return layer


# ---------------------------------------------------------------- fast_lora

@pytest.mark.parametrize("autocast", [False, True])
def test_fused_gradients_match_autograd_of_the_formula(autocast):
    """The fused path has its own backward: its output and the gradients of x, A and B must be what autograd
    gives for W x + s B A x in float64 (under bf16 autocast within bf16 precision)."""
    layer = layer_with_adapter(FusedLoRALinear)
    adapter = layer.lora["t"]
    x = torch.randn(3, 5, 48, requires_grad=True)
    g = torch.randn(3, 5, 40)  # the gradient arriving at the output
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    assert type(y.grad_fn).__name__ == "LoRALinearFunctionBackward"  # the path this test is about
    (y.float() * g).sum().backward()

    xr, a, b = (t.detach().double().requires_grad_() for t in (x, adapter.A.weight, adapter.B.weight))
    yr = xr @ layer.weight.double().T + 1.0 * (xr @ a.T) @ b.T
    (yr * g.double()).sum().backward()
    tol = BF16 if autocast else FP32
    assert y.dtype == (torch.bfloat16 if autocast else torch.float32)
    torch.testing.assert_close(y.double(), yr.detach(), **tol)
    for got, want in ((x.grad, xr.grad), (adapter.A.weight.grad, a.grad), (adapter.B.weight.grad, b.grad)):
        assert got.dtype == torch.float32  # float32 gradients for float32 leaves, whatever autocast ran in
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_layer_equals_the_plain_layer_forward_and_backward(autocast):
    plain, fused = layer_with_adapter(LoRALinear), layer_with_adapter(FusedLoRALinear)
    x = torch.randn(3, 5, 48)
    outs = {}
    for name, layer in (("plain", plain), ("fused", fused)):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer(xi)
        y.float().square().sum().backward()
        outs[name] = (y.float(), xi.grad, layer.lora["t"].A.weight.grad, layer.lora["t"].B.weight.grad)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outs[name] += (layer(x).float(),)  # the inference path
    for want, got in zip(outs["plain"], outs["fused"]):
        torch.testing.assert_close(got, want, **(BF16 if autocast else FP32))


def test_fused_layers_fall_back_to_the_plain_forward_where_they_do_not_apply():
    model = model_with_adapter()
    apply_lora(model, rank=2, name="second", targets="all", verbose=False)
    fused = use_fused_lora(copy.deepcopy(model))
    assert isinstance(fused.model.layers[0].self_attn.q_proj, FusedLoRALinear)
    set_active_lora(model, {"default": 0.5, "second": 1.0})  # a mix: the plain path, in both models
    set_active_lora(fused, {"default": 0.5, "second": 1.0})
    assert torch.equal(fused(X).logits, model(X).logits)
    dropout = model_with_adapter(dropout=0.1).train()  # dropout at work in training
    torch.manual_seed(1)
    want = dropout(X).logits
    torch.manual_seed(1)
    assert torch.equal(use_fused_lora(dropout)(X).logits, want)
    assert type(use_fused_lora(dropout, on=False).model.layers[0].mlp.up_proj) is LoRALinear


def test_a_fused_model_trains_as_the_plain_one():
    models = [model_with_adapter(), use_fused_lora(model_with_adapter())]
    for model in models:
        train_steps(model)
    for (name, want), got in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=name)


# ---------------------------------------------------------------- float32 attention

def test_float32_attention_is_the_plain_attention_in_float32_and_close_under_autocast():
    model = model_with_adapter()
    plain = model(X).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain_bf16 = model(X).logits.float()
    for module in model.modules():
        if isinstance(module, Attention):
            module.float32 = True
    assert torch.equal(model(X).logits, plain)  # float32 already: the same ops
    with torch.autocast("cpu", dtype=torch.bfloat16):
        upcast = model(X).logits.float()
    torch.testing.assert_close(upcast, plain_bf16, atol=5e-2, rtol=5e-2)


# ---------------------------------------------------------------- fast_decode

def test_column_major_weights_keep_values_keys_and_outputs():
    model = model_with_adapter()
    want, state = model(X).logits, {k: v.clone() for k, v in model.state_dict().items()}
    hold_weights_column_major(model)
    assert not model.model.layers[0].mlp.up_proj.weight.is_contiguous()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    torch.testing.assert_close(model(X).logits, want, atol=1e-6, rtol=1e-6)  # products in another order
    saved = model.state_dict()
    assert saved.keys() == state.keys() and all(saved[k].is_contiguous() and torch.equal(saved[k], v)
                                                for k, v in state.items())


class Doubler(nn.Module):
    """A module whose forward calls a helper method, a property and super()'s machinery, as any module may."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.factor = 2.0

    @property
    def scale(self) -> float:
        return self.factor

    def helper(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.helper(x) + sum(p.sum() for p in self.parameters()) * 0


def test_bind_forward_needs_no_list_of_classes():
    module = Doubler()
    bound = bind_forward(module)
    x = torch.randn(3, 4)
    assert not isinstance(bound, nn.Module) and torch.equal(bound(x), module(x))


def test_enable_fast_paths_switches_on_what_it_lists_and_nothing_with_the_switch_off(monkeypatch):
    model = model_with_adapter()
    monkeypatch.setenv("PEBBLE_FAST_PATHS", "0")
    assert enable_fast_paths(model) == [] and type(model.model.layers[0].mlp.up_proj) is LoRALinear
    monkeypatch.delenv("PEBBLE_FAST_PATHS")
    assert enable_fast_paths(model) == ["fused LoRA", "float32 attention", "column-major weights", "bound decode"]
    up = model.model.layers[0].mlp.up_proj
    assert isinstance(up, FusedLoRALinear) and model.model.layers[1].self_attn.float32
    assert not up.weight.is_contiguous() and up.lora["default"].A.weight.is_contiguous()  # adapters as they are
    assert model.bind_decode is bind_forward


# ---------------------------------------------------------------- all off

def test_with_every_fast_path_off_training_and_chat_give_what_they_give_with_them(monkeypatch, tmp_path):
    from dataset.lm_dataset import SFTDataset
    from model.chat import generate_replies
    from model.loading import load_tokenizer
    from trainer.config import TrainConfig
    from trainer.trainer_utils import train

    tokenizer = load_tokenizer("model")
    lines = [f'{{"conversations": [{{"role": "user", "content": "stone {i}?"}}, '
             f'{{"role": "assistant", "content": "river {i}!"}}]}}' for i in range(16)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines), encoding="utf-8")
    data = SFTDataset(tmp_path / "d.jsonl", tokenizer, 64)
    conversations = [[{"role": "user", "content": "stone 3?"}], [{"role": "user", "content": "光"}]]
    results = {}
    for switch in ("1", "0"):
        monkeypatch.setenv("PEBBLE_FAST_PATHS", switch)
        torch.manual_seed(0)
        model = PebbleForCausalLM(PebbleConfig(**{**TINY, "vocab_size": len(tokenizer)}))
        apply_lora(model, rank=4, targets="all", verbose=False)
        cfg = TrainConfig(save_dir=str(tmp_path / switch), batch_size=4, dtype="float32", max_steps=3,
                          data_path=str(tmp_path / "d.jsonl"))
        train(model, data, cfg, lambda m: None, "run")
        assert isinstance(model.model.layers[0].mlp.up_proj, FusedLoRALinear) == (switch == "1")
        enable_fast_paths(model.eval())
        results[switch] = ({k: v for k, v in model.named_parameters() if ".lora." in k},
                           generate_replies(model, tokenizer, conversations, max_new_tokens=12))
    for key, want in results["1"][0].items():
        torch.testing.assert_close(results["0"][0][key], want, atol=1e-4, rtol=1e-4, msg=key)
    assert results["0"][1] == results["1"][1]


def test_with_every_fast_path_off_the_server_answers_as_with_them(monkeypatch):
    pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_serve import ROOT, ask, running_server

    if not (ROOT / "out" / "full_sft_256.safetensors").is_file():
        pytest.skip("the shipped base out/full_sft_256.safetensors is missing")
    replies = {}
    for switch in ("1", "0"):
        monkeypatch.setenv("PEBBLE_FAST_PATHS", switch)
        with running_server(ROOT / "out", "--lora_weight", "lora_identity") as (url, worker):
            assert isinstance(worker.model.model.layers[0].mlp.up_proj, FusedLoRALinear) == (switch == "1")
            replies[switch] = [ask(url, m, "Who are you?").choices[0].message.content
                               for m in ("pebble", "lora_identity")]
    assert replies["0"] == replies["1"]


def test_fused_layers_run_routed_rows_as_the_plain_masks_do():
    from model import adapters_per_row
    from model.chat import left_pad

    model = model_with_adapter()
    apply_lora(model, rank=2, alpha=4, name="second", targets="q_proj,down_proj", verbose=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora.second.B." in name:
                p.normal_(0, 0.1)
    fused = use_fused_lora(copy.deepcopy(model))
    ids, mask = left_pad([[5, 6, 7], [8, 9], [10, 11, 12, 13], [14]], 0)
    names = ["default", None, "second", "default"]
    for autocast in (False, True):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            with adapters_per_row(model, names):
                want = model(ids, attention_mask=mask).logits.float()  # all rows under masks
            with adapters_per_row(fused, names):
                got = fused(ids, attention_mask=mask).logits.float()  # each adapter on its rows
        torch.testing.assert_close(got, want, **(BF16 if autocast else FP32))
