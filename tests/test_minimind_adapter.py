"""Adapters exported as MiniMind's `.pth`, checked against a reference loader written from MiniMind's file format:
a rank-R adapter B (A x) added to every square linear layer, loaded strictly from `{module}.lora.A/B.weight` with
any `module.` prefix dropped. Loaded that way the file gives our logits (up to float16 rounding), and our own
load_lora reads it back to the same logits; what MiniMind cannot carry is refused, or left out on request."""
import copy
import os

import pytest
import torch
from torch import nn

from model import PebbleConfig, PebbleForCausalLM, apply_lora, load_lora
from model.checkpoint import load_model
from model.common import REPO_ROOT, PebbleError
from model.model_lora import find_targets, lora_layers
from scripts.convert_model import export_minimind, main

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=6400)
X = torch.randint(3, 6400, (2, 9), generator=torch.Generator().manual_seed(7))
FP16_TOL = dict(atol=2e-3, rtol=0)  # the file's weights are float16; the differences measured stayed below 5e-4
NOT_SQUARE = ("k_proj", "v_proj", "gate_proj", "up_proj", "down_proj")


class MiniMindLoRA(nn.Module):
    """The adapter MiniMind adds to a layer: B (A x), no scale, under the names A and B."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.A = nn.Linear(in_features, rank, bias=False)  # weight (rank, in)
        self.B = nn.Linear(rank, out_features, bias=False)  # weight (out, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.B(self.A(x))


def load_minimind_way(model: nn.Module, path, rank: int) -> nn.Module:
    """Attach a rank-`rank` MiniMindLoRA to every square nn.Linear (its output added by a forward hook), then fill
    each strictly from the file's `{module}.lora.` tensors, as MiniMind's loader does."""
    square = [(name, m) for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and m.in_features == m.out_features]
    for _, layer in square:
        layer.lora = MiniMindLoRA(layer.in_features, layer.out_features, rank)
        layer.register_forward_hook(lambda m, args, out: out + m.lora(args[0]))
    state = {k.removeprefix("module."): v for k, v in torch.load(path, weights_only=True).items()}
    for name, layer in square:
        prefix = f"{name}.lora."
        layer.lora.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return model


def base(seed: int = 0) -> PebbleForCausalLM:
    torch.manual_seed(seed)
    return PebbleForCausalLM(PebbleConfig(**TINY)).eval()


def trained(targets: str, rank: int = 4, alpha: float = 12.0) -> PebbleForCausalLM:
    """The tiny base with a random adapter `default` (scale alpha / rank = 3 by default, not MiniMind's 1)."""
    model = base()
    apply_lora(model, rank=rank, alpha=alpha, targets=targets, verbose=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def without_non_square(model: nn.Module) -> nn.Module:
    """A copy of model whose adapters on non-square layers are zeroed: the part MiniMind can carry."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            if layer.in_features != layer.out_features:
                for adapter in layer.lora.values():
                    adapter.B.weight.zero_()
    return model


@torch.no_grad()
def logits(model: nn.Module) -> torch.Tensor:
    return model(input_ids=X).logits


@pytest.mark.parametrize("minimind_rank", [16, 8])
def test_square_adapter_loaded_the_minimind_way_gives_our_logits(tmp_path, minimind_rank):
    ours = trained("q_proj")  # o_proj is square too: the file must give it a zero adapter
    path = export_minimind(ours, "default", tmp_path / "lora_test_64.pth", rank=minimind_rank)
    state = torch.load(path, weights_only=True)
    square = find_targets(base(), "square")
    assert set(state) == {f"{p}.lora.{m}.weight" for p in square for m in "AB"}
    assert all(v.dtype == torch.float16 for v in state.values())
    assert state["model.layers.1.self_attn.o_proj.lora.A.weight"].shape == (minimind_rank, 64)
    assert state["model.layers.1.self_attn.o_proj.lora.B.weight"].shape == (64, minimind_rank)

    expected = logits(ours)
    minimind = logits(load_minimind_way(base(), path, minimind_rank))
    torch.testing.assert_close(minimind, expected, **FP16_TOL)
    assert (logits(base()) - expected).abs().max() > 50 * FP16_TOL["atol"]  # the adapter does change the output

    again = base()  # our own loader reads MiniMind's file back
    assert load_lora(again, path) == "lora_test"
    torch.testing.assert_close(logits(again), expected, **FP16_TOL)
    torch.testing.assert_close(logits(again), minimind, atol=1e-5, rtol=0)  # the same float16 weights


def test_non_square_targets_are_refused_in_one_sentence(tmp_path):
    with pytest.raises(PebbleError) as error:
        export_minimind(trained("all"), "default", tmp_path / "x_64.pth")
    message = str(error.value)
    assert f"adapts {', '.join(NOT_SQUARE)}, which are not square" in message
    assert "--targets square" in message and "--square_only" in message and message.count(". ") == 0
    with pytest.raises(PebbleError, match="adapts only k_proj, v_proj and no square layer"):
        export_minimind(trained("k_proj,v_proj"), "default", tmp_path / "x_64.pth", square_only=True)
    with pytest.raises(PebbleError, match="has rank 8, above --rank 4; pass --rank 8"):
        export_minimind(trained("square", rank=8), "default", tmp_path / "x_64.pth", rank=4)
    assert not list(tmp_path.iterdir())


def test_square_only_exports_the_square_part_with_a_warning(tmp_path, capsys):
    ours = trained("all")
    path = export_minimind(ours, "default", tmp_path / "x_64.pth", square_only=True)
    assert "warning: default also adapts k_proj" in capsys.readouterr().out
    minimind = logits(load_minimind_way(base(), path, 16))
    torch.testing.assert_close(minimind, logits(without_non_square(ours)), **FP16_TOL)
    assert (minimind - logits(ours)).abs().max() > 50 * FP16_TOL["atol"]  # and it is not the whole adapter


def test_shipped_identity_adapter_exports_under_minimind_naming(tmp_path, monkeypatch):
    shipped_base = REPO_ROOT / "out" / "full_sft_256.safetensors"
    shipped = REPO_ROOT / "out" / "lora" / "lora_identity_256.safetensors"
    (tmp_path / "lora").mkdir()
    os.symlink(shipped_base, tmp_path / shipped_base.name)
    os.symlink(shipped, tmp_path / "lora" / shipped.name)
    args = ["minimind-export", "--save_dir", str(tmp_path), "--adapter", "lora_identity"]
    with pytest.raises(PebbleError, match="train it with --targets square"):
        main(args)
    main(args + ["--square_only"])
    path = tmp_path / "lora_identity_256.pth"
    ours = load_model(shipped_base).eval()
    load_lora(ours, shipped)
    minimind = logits(load_minimind_way(load_model(shipped_base).eval(), path, 16))
    torch.testing.assert_close(minimind, logits(without_non_square(ours)), **FP16_TOL)
