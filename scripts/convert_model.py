"""Convert Pebble weights to and from other formats: a transformers folder, PEFT LoRA adapters, MiniMind adapters.

    python scripts/convert_model.py hf                                 # out/full_sft_256 -> out/hf/full_sft_256/
    python scripts/convert_model.py hf --merge lora_identity           # the same with an adapter folded in
    python scripts/convert_model.py peft-export --adapter lora_medical # -> out/peft/lora_medical_256/
    python scripts/convert_model.py peft-import --peft_dir DIR --name my_lora   # -> out/lora/my_lora_256.safetensors
    python scripts/convert_model.py minimind-export --adapter lora_square     # -> out/lora_square_256.pth

`hf` writes config.json, model.safetensors (our key names, tied lm_head left out as transformers expects),
generation_config.json and the tokenizer files. config.json names transformers' own Qwen3ForCausalLM (weights with
q/k norms, MiniMind-3) or LlamaForCausalLM (without them), so AutoModelForCausalLM.from_pretrained(dir) loads it
without remote code, and so can other runtimes that know those architectures. `--remote_code` names our
PebbleForCausalLM instead (model/hf_pebble.py), with copies of it and model/model_pebble.py (then pass
trust_remote_code=True).
`peft-export` writes the base folder into adapter_config.json as an absolute path, so AutoPeftModelForCausalLM
finds it from any working directory. PEFT adapters name a module's matrices
`base_model.model.{module}.lora_A.weight` [r, in] and `lora_B.weight` [out, r], with scale lora_alpha / r
(lora_alpha / sqrt(r) under rsLoRA); ours are `{module}.lora.A.weight` / `lora.B.weight` with scale alpha / r.
`minimind-export` writes MiniMind's own adapter file (float16, scale folded in, square layers only: see
export_minimind); an adapter trained with --targets square carries over whole (up to float16 rounding).
"""
import argparse
import json
import math
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import transformers
from torch import nn

from model import hf_pebble
from model.checkpoint import atomic_write, load_model, load_tensors, save_tensors, state_dict_to_save
from model.common import REPO_ROOT, PathLike, PebbleError, repo_path, run_cli
from model.loading import adapter_path, check_tokenizer_fits, load_tokenizer, weight_path
from model.lora_files import adapter_metadata, adapter_modules, check_modules_fit, load_lora, pair_tensors
from model.model_lora import check_adapter_name, find_targets, lora_layers, merge_lora
from model.model_pebble import PebbleConfig, PebbleForCausalLM
from trainer.config import base_model_parser

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
PEFT_PREFIX = "base_model.model."
DTYPES = ("float32", "bfloat16", "float16")
# PEFT options that change what the adapter computes in ways our LoRALinear cannot, and what to say about each.
UNSUPPORTED = {
    "use_dora": "DoRA (use_dora) rescales the weight's columns",
    "fan_in_fan_out": "fan_in_fan_out stores transposed (Conv1D) weights",
    "modules_to_save": "modules_to_save stores whole trained layers besides the adapter",
    "lora_bias": "lora_bias trains a bias in lora_B",
    "use_qalora": "QA-LoRA pools the input before lora_A",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens) applies only after given tokens",
    "layer_replication": "layer_replication duplicates decoder layers",
    "target_parameters": "target_parameters adapts raw parameters, not linear layers",
    "trainable_token_indices": "trainable_token_indices trains rows of the embedding",
}
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")  # these also rewrite the base weights


# ---------------------------------------------------------------- small helpers

def write_json(path: Path, obj: Any) -> Path:
    """Write obj as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def copy_file(src: Path, dst: Path) -> Path:
    """Copy src to dst atomically."""
    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def folder_size(path: Path) -> int:
    """Bytes in the files directly inside path."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def json_number(x: float) -> float | int:
    """x as an int when it is whole (PEFT's configs write lora_alpha=16, not 16.0)."""
    return int(x) if float(x).is_integer() else float(x)


# ---------------------------------------------------------------- Pebble -> transformers folder

def native_config(config: PebbleConfig, dtype: torch.dtype) -> dict:
    """config.json naming transformers' own class for our weights: Qwen3 with q/k norms, Llama without them.

    Both classes use our key names and our math (pre-norm, rotate-half RoPE, GQA, SwiGLU, no biases, tied head).
    Weights without q/k norms (minimind2 era) are Llama's and not Qwen2's, whose q/k/v projections carry biases.
    rope_theta is written flat for transformers 4.x, vLLM and llama.cpp, and as rope_parameters for 5.x.
    """
    name = str(dtype).removeprefix("torch.")
    out = {key: getattr(config, key) for key in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
        "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")}
    out.update(rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta}, attention_bias=False,
               attention_dropout=0.0, initializer_range=0.02, use_cache=True, dtype=name,
               torch_dtype=name,  # the key transformers 4.x reads
               transformers_version=transformers.__version__)
    if config.qk_norm:
        out.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3", use_sliding_window=False,
                   sliding_window=None, max_window_layers=config.num_hidden_layers)
    else:
        out.update(architectures=["LlamaForCausalLM"], model_type="llama", mlp_bias=False, pretraining_tp=1)
    return out


def remote_code_config(model: PebbleForCausalLM, dtype: torch.dtype) -> dict:
    """config.json for our own class (model/hf_pebble.py): our config plus architectures, auto_map and the
    weights' dtype."""
    config = hf_pebble.PebbleConfig(**model.config.to_dict()).to_dict()
    config.pop("_name_or_path", None)
    name = str(dtype).removeprefix("torch.")
    config.update(
        architectures=["PebbleForCausalLM"],
        auto_map={"AutoConfig": "hf_pebble.PebbleConfig", "AutoModelForCausalLM": "hf_pebble.PebbleForCausalLM"},
        dtype=name,
        torch_dtype=name,  # the key transformers 4.x reads
    )
    return config


def export_hf(model: PebbleForCausalLM, out_dir: PathLike, tokenizer_dir: PathLike = "model",
              dtype: torch.dtype = torch.float32, remote_code: bool = False) -> Path:
    """Write model (with any merged adapter) and the tokenizer as a transformers folder; config.json comes last.

    The folder names transformers' own Qwen3 or Llama class (native_config); with remote_code it names our class
    instead and holds copies of model/hf_pebble.py and model/model_pebble.py, which load only with
    trust_remote_code=True.
    """
    if any(layer.active and not layer.merged for _, layer in lora_layers(model)):
        raise PebbleError("the model has an active adapter that is not merged; merge_lora(model) first or "
                          "deactivate it, since a transformers folder holds plain weights only")
    tokenizer_dir = repo_path(tokenizer_dir)
    check_tokenizer_fits(load_tokenizer(str(tokenizer_dir)), model, str(tokenizer_dir))
    out_dir = repo_path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PebbleError(f"{out_dir} is a file; pass an --out_dir folder")
    # Tied lm_head is left out: transformers re-ties it to embed_tokens after loading (_tied_weights_keys).
    save_tensors(state_dict_to_save(model, dtype), out_dir / "model.safetensors", {"format": "pt"})
    if remote_code:
        for name in ("hf_pebble.py", "model_pebble.py"):
            copy_file(REPO_ROOT / "model" / name, out_dir / name)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            copy_file(tokenizer_dir / name, out_dir / name)
    config = model.config
    write_json(out_dir / "generation_config.json", {
        "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id, "transformers_version": transformers.__version__,
    })
    config_json = remote_code_config(model, dtype) if remote_code else native_config(config, dtype)
    write_json(out_dir / "config.json", config_json)  # last: a folder without it is unfinished
    return out_dir


# ---------------------------------------------------------------- Pebble adapter -> PEFT folder

def export_peft(model: nn.Module, name: str, out_dir: PathLike, base_model_name_or_path: Optional[str] = None) -> Path:
    """Write adapter `name` (attached to model) as a PEFT folder: adapter_config.json, adapter_model.safetensors."""
    adapters = adapter_modules(model, name)
    r = Counter(a.rank for a in adapters.values()).most_common(1)[0][0]
    alpha = Counter(a.alpha for a in adapters.values()).most_common(1)[0][0]
    names = sorted({path.split(".")[-1] for path in adapters})
    # Leaf names when the adapter covers every layer of those names (PEFT's usual form), else exact module paths.
    targets = names if set(find_targets(model, names)) == set(adapters) else sorted(adapters)
    tensors = {}
    for path, adapter in adapters.items():
        tensors[f"{PEFT_PREFIX}{path}.lora_A.weight"] = adapter.A.weight.detach().float()  # (r, in)
        tensors[f"{PEFT_PREFIX}{path}.lora_B.weight"] = adapter.B.weight.detach().float()  # (out, r)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
        "r": r, "lora_alpha": json_number(alpha), "target_modules": targets, "lora_dropout": 0.0, "bias": "none",
        "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None,
        "init_lora_weights": True, "inference_mode": True,
        "rank_pattern": {p: a.rank for p, a in adapters.items() if a.rank != r},
        "alpha_pattern": {p: json_number(a.alpha) for p, a in adapters.items() if a.alpha != alpha},
    }
    out_dir = repo_path(out_dir)
    save_tensors(tensors, out_dir / "adapter_model.safetensors", {"format": "pt"})
    write_json(out_dir / "adapter_config.json", config)
    return out_dir


# ---------------------------------------------------------------- PEFT folder -> Pebble adapter

def read_peft_config(peft_dir: Path) -> dict:
    """adapter_config.json of a PEFT folder, refusing what a Pebble adapter cannot represent."""
    path = peft_dir / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PebbleError(f"{path} does not exist; pass the folder a PEFT save_pretrained wrote") from None
    except json.JSONDecodeError as e:
        raise PebbleError(f"{path} is not valid JSON ({e}); re-export the adapter") from e
    if not isinstance(config, dict):
        raise PebbleError(f"{path} does not hold a JSON object; it is not a PEFT adapter config")
    where = f"{path} uses"
    if config.get("peft_type") != "LORA":
        raise PebbleError(f"{path} describes a {config.get('peft_type')} adapter; only LoRA can be imported")
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise PebbleError(f"{where} task_type {config['task_type']}; only CAUSAL_LM adapters fit a Pebble model")
    for key, why in UNSUPPORTED.items():
        if config.get(key):
            raise PebbleError(f"{where} {key}={config[key]!r}, which Pebble adapters cannot represent: {why}")
    if config.get("bias", "none") != "none":
        raise PebbleError(f"{where} bias={config['bias']!r}; Pebble adapters train no biases, so only 'none' imports")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        raise PebbleError(f"{where} init_lora_weights={init!r}, which also changes the base weights; convert it "
                          "to a plain LoRA first (PEFT: path_initial_model_for_weight_conversion)")
    return config


def read_peft_weights(peft_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The adapter's matrices by module path: {module: {"A": (r, in), "B": (out, r)}}."""
    for file_name in ("adapter_model.safetensors", "adapter_model.bin"):
        path = peft_dir / file_name
        if path.is_file():
            break
    else:
        raise PebbleError(f"{peft_dir} holds neither adapter_model.safetensors nor adapter_model.bin; pass the folder "
                          "a PEFT save_pretrained wrote")
    tensors, _ = load_tensors(path)  # .bin is read with weights_only=True
    return pair_tensors(tensors, path, r"(?:base_model\.model\.)?(.+)\.lora_([AB])\.weight",
                        "base_model.model.{module}.lora_A/lora_B.weight")


def pattern_value(pattern: dict, module: str, default: float) -> float:
    """PEFT's rank_pattern/alpha_pattern lookup: the first key that matches the end of the module path."""
    for key, value in pattern.items():
        try:
            if re.fullmatch(rf"(?:.*\.)?(?:{key})", module):
                return value
        except re.error as e:
            raise PebbleError(f"the pattern {key!r} in adapter_config.json is not a valid regular expression") from e
    return default


def check_fits(modules: dict[str, dict[str, torch.Tensor]], config: dict, model: nn.Module, peft_dir: Path) -> None:
    """Every adapted module exists in the base as a linear layer of the right shape (and is not the tied head)."""
    targets = config.get("target_modules")
    if isinstance(targets, list):  # PEFT matches a listed target to a module path that equals or ends with it
        linears = [p for p, m in model.named_modules() if isinstance(m, nn.Linear) and ".lora." not in p]
        missing = [t for t in targets if not any(p == t or p.endswith(f".{t}") for p in linears)]
        if missing:
            have = sorted({p.split(".")[-1] for p in linears})
            raise PebbleError(f"{peft_dir} targets {', '.join(missing)}, which this model lacks (it has "
                              f"{', '.join(have)}); it was trained for another architecture")
    if "lm_head" in modules:
        raise PebbleError(f"{peft_dir} adapts lm_head, which Pebble ties to the embeddings; it cannot be imported")
    check_modules_fit(model, modules, peft_dir)


def peft_to_pebble(modules: dict[str, dict[str, torch.Tensor]], config: dict,
                   peft_dir: Path) -> tuple[dict[str, torch.Tensor], int, float]:
    """Our tensors for a PEFT adapter -> (tensors, rank, alpha), with one alpha for all modules.

    PEFT's scale for a module is alpha_m / r_m (alpha_m / sqrt(r_m) under rsLoRA); ours is alpha / r_m, so the
    equivalent alpha of a module is scale_m * r_m. Where modules disagree (alpha_pattern, or rsLoRA with a
    rank_pattern), the most common one becomes alpha and the others' ratio is folded into their B.
    """
    equiv: dict[str, float] = {}
    for module, pair in modules.items():
        r = int(pattern_value(config.get("rank_pattern") or {}, module, config.get("r", 8)))
        if pair["A"].shape[0] != r:
            raise PebbleError(f"{peft_dir}: {module} has rank {pair['A'].shape[0]} but adapter_config.json says "
                              f"{r}; the folder's config and weights do not belong together")
        alpha = float(pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8)))
        equiv[module] = alpha * math.sqrt(r) if config.get("use_rslora") else alpha
    alpha = Counter(equiv.values()).most_common(1)[0][0]
    rank = Counter(pair["A"].shape[0] for pair in modules.values()).most_common(1)[0][0]
    tensors = {}
    for module, pair in modules.items():
        tensors[f"{module}.lora.A.weight"] = pair["A"].float()  # (r, in)
        b = pair["B"].float()  # (out, r)
        tensors[f"{module}.lora.B.weight"] = b if equiv[module] == alpha else b * (equiv[module] / alpha)
    return tensors, rank, alpha


def import_peft(peft_dir: PathLike, model: PebbleForCausalLM, out_path: PathLike, name: Optional[str] = None) -> Path:
    """Convert the PEFT LoRA folder peft_dir into our adapter file for the base `model`; returns the file."""
    peft_dir = repo_path(peft_dir)
    name = name or peft_dir.name
    check_adapter_name(name)
    if not peft_dir.is_dir():
        raise PebbleError(f"{peft_dir} is not a folder; pass the folder a PEFT save_pretrained wrote")
    config = read_peft_config(peft_dir)
    modules = read_peft_weights(peft_dir)
    check_fits(modules, config, model, peft_dir)
    tensors, rank, alpha = peft_to_pebble(modules, config, peft_dir)
    meta = adapter_metadata(name, rank, alpha, list(modules), model, source=f"peft:{peft_dir.name}")
    return save_tensors(tensors, repo_path(out_path), meta)


# ---------------------------------------------------------------- Pebble adapter -> MiniMind .pth

MINIMIND_RANK = 16  # the rank MiniMind's apply_lora builds by default (8 in its older releases)


def leaf_names(paths: Sequence[str]) -> str:
    """The distinct last parts of module paths, in order: 'q_proj, o_proj'."""
    return ", ".join(dict.fromkeys(p.split(".")[-1] for p in paths))


def export_minimind(model: nn.Module, name: str, out_path: PathLike, rank: int = MINIMIND_RANK,
                    square_only: bool = False) -> Path:
    """Write adapter `name` as a `.pth` that MiniMind's load_lora reads, and return the path.

    MiniMind attaches a rank-`rank` adapter, computing W x + B (A x), to every square linear layer and loads the
    file into each strictly. So the file holds float16 `{module}.lora.A.weight` (rank, in) and `.lora.B.weight`
    (out, rank) for exactly those layers: our scale alpha / r folded into B, a lower rank padded with zero rows of
    A and zero columns of B (B A is unchanged), and a zero adapter for a square layer ours leaves alone. Layers
    that are not square cannot be carried; square_only leaves them out (the result then computes something else).
    """
    adapters = adapter_modules(model, name)
    if rank <= 0:
        raise PebbleError(f"--rank must be positive, got {rank}")
    square = find_targets(model, "square")
    dropped = [p for p in adapters if p not in square]
    kept = [p for p in adapters if p in square]
    if dropped and not square_only:
        raise PebbleError(f"{name} adapts {leaf_names(dropped)}, which are not square (in_features != out_features), "
                          f"and MiniMind attaches adapters only to square layers ({leaf_names(square)}); train it "
                          f"with --targets square, or pass --square_only to export only its square part, which then "
                          f"computes something else")
    if not kept:
        raise PebbleError(f"{name} adapts only {leaf_names(dropped)} and no square layer, so no part of it fits "
                          "MiniMind; train it with --targets square")
    if dropped:
        print(f"warning: {name} also adapts {leaf_names(dropped)}, which MiniMind cannot carry; the file holds only "
              f"its {leaf_names(kept)} part and answers differently from the whole adapter")
    too_high = max(adapters[p].rank for p in kept)
    if too_high > rank:
        raise PebbleError(f"{name} has rank {too_high}, above --rank {rank}; pass --rank {too_high} and build the "
                          f"adapters in MiniMind with apply_lora(model, rank={too_high})")
    tensors = {}
    for path in square:
        layer = model.get_submodule(path)
        a = torch.zeros(rank, layer.in_features)  # (rank, in)
        b = torch.zeros(layer.out_features, rank)  # (out, rank)
        if path in adapters:
            adapter = adapters[path]
            a[:adapter.rank] = adapter.A.weight.detach().float()
            b[:, :adapter.rank] = adapter.B.weight.detach().float() * adapter.scale
        tensors[f"{path}.lora.A.weight"], tensors[f"{path}.lora.B.weight"] = a.half(), b.half()
    for key, value in tensors.items():
        if not torch.isfinite(value).all():
            raise PebbleError(f"{key} exceeds float16's range once alpha / r is folded in, so MiniMind's float16 "
                              "file cannot hold this adapter")
    return atomic_write(repo_path(out_path), lambda tmp: torch.save(tensors, tmp))


# ---------------------------------------------------------------- command line

def find_adapter(spec: str, save_dir: Path, hidden_size: int) -> Path:
    """An adapter file from a path, or from a name under SAVE_DIR/lora as eval_llm finds it."""
    path = repo_path(spec)
    return path if path.is_file() else adapter_path(save_dir, spec, hidden_size)


def base_reference(spec: str) -> str:
    """What adapter_config.json names as the base: a local folder as an absolute path, anything else (a Hub id)
    as given."""
    path = repo_path(spec)
    return str(path.resolve()) if path.exists() else spec


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The subcommand and its flags (each subcommand takes the base-model flags too)."""
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("command", choices=("hf", "peft-export", "peft-import", "minimind-export"))
    top.add_argument("rest", nargs=argparse.REMAINDER, help="the subcommand's flags (see COMMAND --help)")
    first = top.parse_args(argv)
    parser = base_model_parser(f"convert_model.py {first.command}")
    parser.prog = f"convert_model.py {first.command}"
    if first.command == "hf":
        parser.add_argument("--merge", default="", help="an adapter name or file to fold into the weights")
        parser.add_argument("--dtype", default="float32", choices=DTYPES)
        parser.add_argument("--out_dir", default="", help="default: SAVE_DIR/hf/{weight}_{hidden}[_{merge}]")
        parser.add_argument("--remote_code", action="store_true",
                            help="name our PebbleForCausalLM (needs trust_remote_code=True) instead of Qwen3/Llama")
    elif first.command == "peft-export":
        parser.add_argument("--adapter", required=True, help="an adapter name (as eval_llm finds it) or file")
        parser.add_argument("--out_dir", default="", help="default: SAVE_DIR/peft/{adapter}_{hidden}")
        parser.add_argument("--base_model_name_or_path", default="",
                            help="the base folder (written as an absolute path) or a Hub id; "
                                 "default: SAVE_DIR/hf/{weight}_{hidden}")
    elif first.command == "minimind-export":
        parser.add_argument("--adapter", required=True, help="an adapter name (as eval_llm finds it) or file")
        parser.add_argument("--out", default="", help="default: SAVE_DIR/{adapter}_{hidden}.pth, where MiniMind "
                                                      "looks for it")
        parser.add_argument("--rank", type=int, default=MINIMIND_RANK,
                            help="the rank of MiniMind's apply_lora (16; 8 in older releases); lower ranks are "
                                 "padded with zeros")
        parser.add_argument("--square_only", action="store_true",
                            help="leave out the adapter's non-square layers (MiniMind cannot carry them); the "
                                 "result then differs from the adapter")
    else:
        parser.add_argument("--peft_dir", required=True, help="a folder with adapter_config.json")
        parser.add_argument("--name", default="", help="adapter name; default: the folder's name")
        parser.add_argument("--out", default="", help="default: SAVE_DIR/lora/{name}_{hidden}.safetensors")
    args = parser.parse_args(first.rest)
    args.command = first.command
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run one conversion and print what it wrote."""
    args = parse_args(argv)
    save_dir = repo_path(args.save_dir)
    model = load_model(weight_path(save_dir, args.weight, args.hidden_size)).eval()
    stem = f"{args.weight}_{args.hidden_size}"
    if args.command == "hf":
        suffix = ""
        if args.merge:
            adapter = load_lora(model, find_adapter(args.merge, save_dir, args.hidden_size))
            merge_lora(model)
            suffix = f"_{adapter}"
        out = export_hf(model, args.out_dir or save_dir / "hf" / f"{stem}{suffix}", args.tokenizer_path,
                        getattr(torch, args.dtype), args.remote_code)
    elif args.command == "peft-export":
        adapter = load_lora(model, find_adapter(args.adapter, save_dir, args.hidden_size))
        if args.base_model_name_or_path:
            base = base_reference(args.base_model_name_or_path)
        else:
            base = str((save_dir / "hf" / stem).resolve())
            if not Path(base).is_dir():
                print(f"note: the base folder {base} does not exist yet; write it with convert_model.py hf")
        out = export_peft(model, adapter, args.out_dir or save_dir / "peft" / f"{adapter}_{args.hidden_size}", base)
    elif args.command == "minimind-export":
        adapter = load_lora(model, find_adapter(args.adapter, save_dir, args.hidden_size))
        out_path = args.out or save_dir / f"{adapter}_{args.hidden_size}.pth"
        out = export_minimind(model, adapter, out_path, args.rank, args.square_only)
    else:
        name = args.name or repo_path(args.peft_dir).name
        out_path = args.out or save_dir / "lora" / f"{name}_{args.hidden_size}.safetensors"
        out = import_peft(args.peft_dir, model, out_path, name)
    size = folder_size(out) if out.is_dir() else out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    run_cli(main)
