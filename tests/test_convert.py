"""Conversions to and from Hugging Face formats, each checked against the reference implementation: the exported
folder in transformers' own Qwen3/Llama classes gives our logits and our greedy replies; our adapter in PEFT gives
our logits and replies; a PEFT-trained adapter imported gives PEFT's logits; ours -> PEFT -> ours is exact; what we
cannot represent is refused; the tokenizer files load as a class both transformers 4.x and 5.x have."""
import json

import pytest
import tokenizers
import torch
import transformers.dynamic_module_utils
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from model import PebbleConfig, PebbleForCausalLM, apply_lora, load_lora, save_lora, set_active_lora
from model.chat import generate_replies
from model.checkpoint import fingerprint, load_model, read_metadata
from model.common import REPO_ROOT, PebbleError
from scripts.convert_model import export_hf, export_peft, import_peft, main

peft = pytest.importorskip("peft")

# rope_theta differs from both Qwen3's and Llama's default, so a config that lost it shows in the logits
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=6400,
            rope_theta=5e4)
X = torch.randint(3, 6400, (2, 9), generator=torch.Generator().manual_seed(7))
QUESTIONS = ["你是谁？", "What is your name?", "介绍一下你自己", "hi", "1+1等于几？"]


def base(seed: int = 0, **changes) -> PebbleForCausalLM:
    torch.manual_seed(seed)
    return PebbleForCausalLM(PebbleConfig(**{**TINY, **changes})).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """The tiny base exported as a transformers folder (fp32)."""
    return export_hf(base(), tmp_path_factory.mktemp("hf") / "tiny")


def load_hf(folder) -> torch.nn.Module:
    """An exported folder as transformers loads it, without remote code."""
    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


def replies(model, tokenizer) -> list[str]:
    """Greedy replies to QUESTIONS, decoded as one left-padded batch by model's own generate."""
    return generate_replies(model, tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS], max_new_tokens=32)


def randomize(model, marker: str, seed: int = 1) -> None:
    """Give every parameter whose name holds marker random values, so that the adapter changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if marker in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@torch.no_grad()
def logits(model, ids: torch.Tensor = X) -> torch.Tensor:
    return model(input_ids=ids).logits


@pytest.mark.parametrize("qk_norm, architecture", [(True, "Qwen3ForCausalLM"), (False, "LlamaForCausalLM")])
def test_hf_folder_loads_as_transformers_own_class_and_gives_our_logits(tmp_path, qk_norm, architecture):
    ours = base(qk_norm=qk_norm)
    folder = export_hf(ours, tmp_path / "hf")
    hf = load_hf(folder)
    assert type(hf).__name__ == architecture and type(hf).__module__.startswith("transformers.models.")
    assert not (folder / "model_pebble.py").exists()
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert not any(p.is_meta for p in hf.parameters())
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    assert "lm_head.weight" not in load_file(folder / "model.safetensors")
    assert hf.config.rope_parameters["rope_theta"] == ours.config.rope_theta
    torch.testing.assert_close(logits(hf), logits(ours), atol=1e-5, rtol=0)
    ids = AutoTokenizer.from_pretrained(str(folder)).apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert torch.equal(hf.generate(**ids, max_new_tokens=5, do_sample=False), ours.generate(**ids, max_new_tokens=5))


def test_remote_code_folder_loads_our_class_on_the_meta_device_path(tmp_path, monkeypatch):
    # trust_remote_code copies model_pebble.py into a modules cache: keep it out of the home directory
    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    folder = export_hf(base(), tmp_path / "hf", remote_code=True)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True).eval()
    assert type(hf).__module__.startswith("transformers_modules")  # the copied modeling file, not ours
    assert not any(p.is_meta for p in hf.parameters())
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "hf_pebble.PebbleForCausalLM"
    assert config["architectures"] == ["PebbleForCausalLM"] and config["torch_dtype"] == "float32"
    torch.testing.assert_close(logits(hf), logits(base()), atol=1e-5, rtol=0)


def test_tokenizer_files_name_a_class_transformers_4_and_5_both_have():
    config = json.loads((REPO_ROOT / "model" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # 5.x's TokenizersBackend is missing from 4.x
    # 4.x's PreTrainedTokenizerFast also returns token_type_ids unless told not to, and Qwen3's generate refuses them
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
    tokenizer = AutoTokenizer.from_pretrained(str(REPO_ROOT / "model"))
    raw = tokenizers.Tokenizer.from_file(str(REPO_ROOT / "model" / "tokenizer.json"))
    messages = [{"role": "system", "content": "Nova"}, {"role": "user", "content": "你是谁？"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nNova<|im_end|>\n<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids
    specials = {"pad": "<|endoftext|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"}
    assert all(getattr(tokenizer, f"{k}_token_id") == raw.token_to_id(t) for k, t in specials.items())


def test_hf_export_refuses_an_unmerged_adapter_and_a_too_small_vocab(tmp_path):
    model = base()
    apply_lora(model, rank=4, verbose=False)
    with pytest.raises(PebbleError, match="not merged"):
        export_hf(model, tmp_path / "a")
    torch.manual_seed(0)
    small = PebbleForCausalLM(PebbleConfig(**{**TINY, "vocab_size": 97}))
    with pytest.raises(PebbleError, match="tokenizer has 6400 tokens"):
        export_hf(small, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_our_adapter_in_peft_gives_our_logits(hf_dir, tmp_path):
    model = base()
    apply_lora(model, rank=4, alpha=12, targets="q_proj,v_proj,down_proj", verbose=False)
    randomize(model, ".lora.")
    out = export_peft(model, "default", tmp_path / "peft", base_model_name_or_path=str(hf_dir))
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (4, 12, ["down_proj", "q_proj", "v_proj"])
    keys = load_file(out / "adapter_model.safetensors")
    assert "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight" in keys and len(keys) == 12
    peft_model = peft.PeftModel.from_pretrained(load_hf(hf_dir), str(out)).eval()
    torch.testing.assert_close(logits(peft_model), logits(model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", [
    dict(r=4, lora_alpha=12),
    dict(r=4, lora_alpha=6, use_rslora=True),
    dict(r=4, lora_alpha=8, rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 3}, safe_serialization=False),
], ids=["alpha", "rslora", "patterns-bin"])
def test_peft_trained_adapter_imports_with_peft_logits(hf_dir, tmp_path, options):
    options = dict(options)
    safe = options.pop("safe_serialization", True)
    torch.manual_seed(3)
    peft_model = peft.get_peft_model(load_hf(hf_dir), peft.LoraConfig(
        target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM", **options)).eval()
    randomize(peft_model, "lora_B")
    expected = logits(peft_model)
    peft_model.save_pretrained(str(tmp_path / "peft"), safe_serialization=safe)
    ours = base()
    path = import_peft(tmp_path / "peft", ours, tmp_path / "imported_64.safetensors", name="imported")
    meta = read_metadata(path)
    assert meta["targets"] == ["down_proj", "q_proj", "v_proj"] and meta["base_fingerprint"] == fingerprint(ours)
    name = load_lora(ours, path)
    torch.testing.assert_close(logits(ours), expected, atol=1e-5, rtol=0)
    # and back to PEFT: ranks and scales that differ by module must survive as rank_pattern/alpha_pattern
    back = export_peft(ours, name, tmp_path / "back")
    reloaded = peft.PeftModel.from_pretrained(load_hf(hf_dir), str(back)).eval()
    torch.testing.assert_close(logits(reloaded), expected, atol=1e-5, rtol=0)
    set_active_lora(ours, None)
    assert not torch.allclose(logits(ours), expected, atol=1e-3)  # the adapter does change the output


def test_ours_to_peft_to_ours_is_exact(tmp_path):
    model = base()
    apply_lora(model, rank=4, alpha=7.5, targets="square", name="mine", verbose=False)
    randomize(model, ".lora.")
    first = save_lora(model, tmp_path / "mine_64.safetensors")
    export_peft(model, "mine", tmp_path / "peft")
    second = import_peft(tmp_path / "peft", base(), tmp_path / "back_64.safetensors", name="mine")
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta_a, meta_b = read_metadata(first), read_metadata(second)
    for key in ("rank", "alpha", "targets", "base_fingerprint", "base_config", "name", "format"):
        assert meta_a[key] == meta_b[key], key


@pytest.mark.parametrize("change, message", [
    ({"use_dora": True}, "DoRA"),
    ({"bias": "all"}, "train no biases"),
    ({"fan_in_fan_out": True}, "transposed"),
    ({"modules_to_save": ["lm_head"]}, "whole trained layers"),
    ({"target_modules": ["self_attn.q_proj", "gate_up_proj"]}, "targets gate_up_proj, which this model lacks"),
    ({"peft_type": "IA3"}, "only LoRA"),
    ({"r": 8}, "rank 4 but adapter_config.json says 8"),
])
def test_import_refuses_what_a_pebble_adapter_cannot_represent(tmp_path, change, message):
    model = base()
    apply_lora(model, rank=4, targets="q_proj", verbose=False)
    folder = export_peft(model, "default", tmp_path / "peft")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(PebbleError, match=message):
        import_peft(folder, base(), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_import_refuses_a_module_or_shape_the_base_lacks(tmp_path):
    model = base()
    apply_lora(model, rank=4, targets="q_proj", verbose=False)
    folder = export_peft(model, "default", tmp_path / "peft")
    torch.manual_seed(0)
    wider = PebbleForCausalLM(PebbleConfig(**{**TINY, "hidden_size": 128}))
    with pytest.raises(PebbleError, match="do not fit a 128->128 layer"):
        import_peft(folder, wider, tmp_path / "x.safetensors")
    deeper = folder.parent / "deeper"
    deeper.mkdir()
    (deeper / "adapter_config.json").write_text((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    torch.save({k.replace("layers.1.", "layers.5."): v for k, v in tensors.items()}, deeper / "adapter_model.bin")
    with pytest.raises(PebbleError, match="layers.5.self_attn.q_proj, which this model does not have"):
        import_peft(deeper, base(), tmp_path / "x.safetensors")


def test_shipped_base_with_identity_adapter_exports_and_generates_the_same(tmp_path, capsys, monkeypatch):
    main(["hf", "--merge", "lora_identity", "--out_dir", str(tmp_path / "merged")])
    main(["hf", "--out_dir", str(tmp_path / "base")])
    monkeypatch.chdir(tmp_path)  # a relative base folder, from outside the repo
    main(["peft-export", "--adapter", "lora_identity", "--out_dir", str(tmp_path / "peft"),
          "--base_model_name_or_path", "base"])
    main(["peft-import", "--peft_dir", str(tmp_path / "peft"), "--out", str(tmp_path / "back_256.safetensors")])
    assert capsys.readouterr().out.count("wrote ") == 4
    shipped = REPO_ROOT / "out" / "lora" / "lora_identity_256.safetensors"
    a, b = load_file(shipped), load_file(tmp_path / "back_256.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((tmp_path / "base").resolve())

    ours = load_model(REPO_ROOT / "out" / "full_sft_256.safetensors").eval()
    load_lora(ours, shipped)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "你是谁？"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    expected = replies(ours, tokenizer)
    merged = load_hf(tmp_path / "merged")
    assert type(merged).__name__ == "Qwen3ForCausalLM"
    torch.testing.assert_close(logits(merged, ids), logits(ours, ids), atol=1e-4, rtol=0)
    assert replies(merged, tokenizer) == expected
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the adapter finds its base from any working directory
    with_adapter = peft.AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "peft")).eval()
    assert type(with_adapter.get_base_model()).__name__ == "Qwen3ForCausalLM"
    torch.testing.assert_close(logits(with_adapter, ids), logits(ours, ids), atol=1e-4, rtol=0)
    assert replies(with_adapter, tokenizer) == expected


def test_peft_export_names_the_default_base_folder_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["peft-export", "--adapter", "lora_identity", "--out_dir", str(tmp_path / "peft")])
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((REPO_ROOT / "out" / "hf" / "full_sft_256").resolve())
