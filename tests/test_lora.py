"""LoRA invariants: a zero B is the base, only adapters learn, merge == unmerged, files round-trip, MiniMind
adapters load, wrong bases are refused, adapters switch and combine (the fused layers: tests/test_fast_paths.py)."""
import pytest
import torch
from safetensors.torch import load_file

from model import (PebbleConfig, PebbleForCausalLM, apply_lora, load_lora, lora_disabled, merge_lora, save_lora,
                   set_active_lora, unmerge_lora)
from model.checkpoint import load_model
from model.common import PebbleError
from model.model_lora import LoRALinear, find_targets

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=97)


def base(seed: int = 0, **overrides) -> PebbleForCausalLM:
    torch.manual_seed(seed)
    return PebbleForCausalLM(PebbleConfig(**{**TINY, **overrides})).eval()


def randomize_lora(model, name: str, seed: int = 1) -> None:
    """Give adapter `name` a non-zero B so that it changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p_name, p in model.named_parameters():
            if f".lora.{name}." in p_name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


X = torch.randint(3, 97, (2, 9), generator=torch.Generator().manual_seed(7))


def train_steps(model, steps: int = 3) -> None:
    """A few AdamW steps of the language-model loss on X, over the trainable parameters."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        model(X, labels=X).loss.backward()
        opt.step()
        opt.zero_grad()


def test_square_rule_picks_q_and_o_under_gqa_and_unknown_target_is_an_error():
    model = base()
    assert [p.split(".")[-1] for p in find_targets(model, "square")] == ["q_proj", "o_proj"] * 2
    assert len(find_targets(model, "q_proj,v_proj,down_proj")) == 6
    every = {p for p, m in model.named_modules() if isinstance(m, torch.nn.Linear) and p != "lm_head"}
    assert set(find_targets(model, "all")) == every and len(every) == 7 * 2
    with pytest.raises(PebbleError, match="matches no linear layer"):
        find_targets(model, "qkv_proj")


def test_zero_b_gives_exactly_the_base_output():
    model = base()
    ref = model(X).logits
    apply_lora(model, rank=4, verbose=False)
    assert torch.equal(model(X).logits, ref)


def test_only_lora_learns_and_base_is_unchanged():
    model = base()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, rank=4, alpha=8, verbose=False)
    train_steps(model)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    grads = [n for n, p in model.named_parameters() if p.requires_grad]
    assert grads and all(".lora.default." in n for n in grads)
    assert not torch.equal(model.eval()(X).logits, base()(X).logits)  # it did learn something


def test_adapter_output_is_base_plus_scaled_b_a_x():
    model = base()
    apply_lora(model, rank=4, alpha=8, verbose=False)
    randomize_lora(model, "default")
    layer = model.model.layers[0].self_attn.q_proj
    x = torch.randn(3, 64)
    a, b = layer.lora["default"].A.weight, layer.lora["default"].B.weight
    torch.testing.assert_close(layer(x), x @ layer.weight.T + (8 / 4) * (x @ a.T @ b.T))


def test_merged_equals_unmerged_and_unmerge_is_exact(tmp_path):
    model = base()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, rank=4, alpha=8, verbose=False)
    randomize_lora(model, "default")
    unmerged = model(X).logits
    merge_lora(model, tmp_path / "merged_64.safetensors")
    merge_lora(model)  # idempotent
    torch.testing.assert_close(model(X).logits, unmerged, atol=1e-5, rtol=1e-4)
    # The exported file is a plain base that reproduces the adapted model.
    torch.testing.assert_close(load_model(tmp_path / "merged_64.safetensors").eval()(X).logits, unmerged,
                               atol=1e-5, rtol=1e-4)
    unmerge_lora(model)
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_save_load_keeps_exact_keys_and_values(tmp_path):
    model = base()
    apply_lora(model, rank=4, name="identity", verbose=False)
    randomize_lora(model, "identity")
    path = save_lora(model, tmp_path / "lora_identity_64.safetensors", data="identity.jsonl")
    saved = load_file(path)
    expected = {f"model.layers.{i}.self_attn.{m}.lora.{ab}.weight" for i in range(2) for m in ("q_proj", "o_proj")
                for ab in "AB"}
    assert set(saved) == expected
    fresh = base()
    name = load_lora(fresh, path)
    assert name == "identity"
    for k, v in saved.items():
        module, _, tail = k.rpartition(".lora.")
        assert torch.equal(fresh.get_submodule(module).lora[name].get_submodule(tail[0]).weight, v)
    torch.testing.assert_close(fresh(X).logits, model(X).logits)


def test_minimind_pth_adapter_loads_and_adds_b_a_x(tmp_path):
    model = base()
    ref = model(X).logits
    g = torch.Generator().manual_seed(3)
    sd = {}
    for i in range(2):
        for m in ("q_proj", "o_proj"):
            sd[f"module.model.layers.{i}.self_attn.{m}.lora.A.weight"] = (torch.randn(16, 64, generator=g) * .1).half()
            sd[f"module.model.layers.{i}.self_attn.{m}.lora.B.weight"] = (torch.randn(64, 16, generator=g) * .1).half()
    torch.save(sd, tmp_path / "lora_medical_64.pth")
    name = load_lora(model, tmp_path / "lora_medical_64.pth")
    assert name == "lora_medical"
    layer = model.model.layers[1].self_attn.o_proj
    x = torch.randn(2, 64)
    a = sd["module.model.layers.1.self_attn.o_proj.lora.A.weight"].float()
    b = sd["module.model.layers.1.self_attn.o_proj.lora.B.weight"].float()
    torch.testing.assert_close(layer(x), x @ layer.weight.T + x @ a.T @ b.T)  # scale 1, rank 16 from shapes
    assert not torch.allclose(model(X).logits, ref)


def test_wrong_base_and_incomplete_files_are_refused(tmp_path):
    model = base()
    apply_lora(model, rank=4, name="identity", verbose=False)
    path = save_lora(model, tmp_path / "lora_identity_64.safetensors")
    with pytest.raises(PebbleError, match="hidden_size"):
        load_lora(base(hidden_size=32, num_attention_heads=4), path)
    with pytest.raises(PebbleError, match="fingerprint"):
        load_lora(base(seed=5), path)
    assert load_lora(base(seed=5), path, allow_other_base=True) == "identity"
    sd = load_file(path)
    sd.pop("model.layers.0.self_attn.q_proj.lora.B.weight")
    torch.save(sd, tmp_path / "broken_64.pth")
    with pytest.raises(PebbleError, match="incomplete"):
        load_lora(base(), tmp_path / "broken_64.pth")


def test_switching_and_combining_adapters():
    model = base()
    ref = model(X).logits
    apply_lora(model, rank=4, name="identity", verbose=False)
    apply_lora(model, rank=8, alpha=16, name="medical", targets="q_proj,v_proj", verbose=False)
    randomize_lora(model, "identity", seed=1)
    randomize_lora(model, "medical", seed=2)
    outs = {}
    for spec in ("identity", "medical", None):
        set_active_lora(model, spec)
        outs[spec] = model(X).logits
    assert torch.equal(outs[None], ref)
    assert not torch.allclose(outs["identity"], outs["medical"])
    # Each adapter alone on a fresh base gives the same as switching to it here.
    set_active_lora(model, "medical")
    with lora_disabled(model):
        assert torch.equal(model(X).logits, ref)
    assert torch.equal(model(X).logits, outs["medical"])
    # A weighted mix adds the weighted deltas of each layer.
    set_active_lora(model, {"identity": 0.5, "medical": 1.0})
    layer = model.model.layers[0].self_attn.q_proj
    x = torch.randn(2, 64)
    expected = x @ layer.weight.T + 0.5 * layer.lora["identity"](x) + layer.lora["medical"](x)
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(PebbleError, match="no adapter named"):
        set_active_lora(model, "legal")


def test_bound_forward_equals_the_modules_in_every_adapter_state():
    from model.fast_decode import bind_forward
    from model.fast_lora import use_fused_lora
    model = base()
    apply_lora(model, rank=4, name="identity", verbose=False)
    apply_lora(model, rank=4, name="medical", verbose=False)
    use_fused_lora(model)  # its layers offer a bound function of their own (FusedLoRALinear.as_function)
    randomize_lora(model, "identity", seed=1)
    randomize_lora(model, "medical", seed=2)
    q = model.model.layers[0].self_attn.q_proj
    for state in ("one", "mixed", "off", "merged"):
        set_active_lora(model, {"one": "identity", "mixed": {"identity": 0.5, "medical": 1.0}, "off": None,
                                "merged": "medical"}[state])
        if state == "merged":
            merge_lora(model)
        step = bind_forward(model)
        bound_q = step.args[0].model.args[0].layers[0].args[0].self_attn.args[0].q_proj
        assert (bound_q is q) == (state == "mixed")  # only a mix of adapters needs the module
        with torch.inference_mode():  # as generate runs
            assert torch.equal(step(X).logits, model(X).logits)
    # Without grad a one-adapter layer skips the autograd function; the outputs agree to rounding.
    unmerge_lora(model)
    set_active_lora(model, "identity")
    with torch.no_grad():
        inference = model(X).logits
    torch.testing.assert_close(inference, model(X).logits, atol=1e-5, rtol=1e-5)


def test_lora_module_is_visible_and_compiles():
    model = base()
    apply_lora(model, rank=4, verbose=False)
    assert isinstance(model.model.layers[0].self_attn.q_proj, LoRALinear)
    assert "LoRAAdapter" in repr(model)
    assert "model.layers.0.self_attn.q_proj.weight" in model.state_dict()  # the base key is unchanged
