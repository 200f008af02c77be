"""Adapter files. One adapter per file, under MiniMind's key names: `{module}.lora.A.weight` (r, in) and
`{module}.lora.B.weight` (out, r); ours are safetensors with metadata (rank, alpha, targets, base config and
fingerprint), MiniMind's are `.pth` state_dicts without any (rank from the shapes, scale 1).

save_lora and load_lora keep MiniMind's names; scripts/convert_model.py pairs PEFT's lora_A/lora_B matrices and
checks them against the base with the same functions."""
import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from model.checkpoint import fingerprint, load_tensors, save_tensors
from model.common import PathLike, PebbleError
from model.model_lora import (LoRAAdapter, adapter_names, check_adapter_name, check_loaded, lora_layers,
                              set_active_lora, wrap_layer)

Pairs = dict[str, dict[str, torch.Tensor]]  # module path -> {"A": (r, in), "B": (out, r)}
KEYS = r"(.+)\.lora\.([AB])\.weight"  # our and MiniMind's tensor names: module path, then A or B


def pair_tensors(tensors: dict[str, torch.Tensor], path: PathLike, keys: str = KEYS,
                 form: str = "{module}.lora.A/B.weight") -> Pairs:
    """Group the A and B matrices of each module: keys is a regular expression whose two groups are the module
    path and A or B; a tensor it does not name, or a module with one matrix, is an error naming the file."""
    modules: Pairs = {}
    for key, value in tensors.items():
        match = re.fullmatch(keys, key)
        if not match:
            raise PebbleError(f"{path} has key {key!r}, which is not a LoRA matrix ({form})")
        modules.setdefault(match[1], {})[match[2]] = value
    for module, pair in modules.items():
        if set(pair) != {"A", "B"}:
            raise PebbleError(f"{path} is incomplete: {module} has only its {''.join(pair)} matrix")
    if not modules:
        raise PebbleError(f"{path} holds no LoRA tensors")
    return modules


def read_lora(path: PathLike) -> tuple[Pairs, dict]:
    """Read an adapter file (ours or MiniMind's .pth) -> ({module path: {"A", "B"}}, metadata)."""
    tensors, meta = load_tensors(path)
    if meta and meta.get("format") not in (None, "pebble-lora"):
        raise PebbleError(f"{path} is a {meta.get('format')} file, not a LoRA adapter")
    return pair_tensors(tensors, path), meta


def check_modules_fit(model: nn.Module, modules: Pairs, source: PathLike) -> None:
    """Every adapted module is a linear layer of this model, and its A and B fit that layer's shape."""
    linears = {p: m for p, m in model.named_modules() if isinstance(m, nn.Linear) and ".lora." not in p}
    for module, pair in modules.items():
        layer = linears.get(module)
        if layer is None:
            raise PebbleError(f"{source} adapts {module}, which this model does not have; it is for another base")
        rank = pair["A"].shape[0]
        if pair["A"].shape != (rank, layer.in_features) or pair["B"].shape != (layer.out_features, rank):
            raise PebbleError(f"{source}: {module} has A {tuple(pair['A'].shape)} and B {tuple(pair['B'].shape)}, "
                              f"which do not fit a {layer.in_features}->{layer.out_features} layer; it was trained "
                              "for another base")


def check_fits_base(model: nn.Module, modules: Pairs, meta: dict, path: PathLike, allow_other_base: bool = False):
    """Refuse an adapter trained for another base: other shapes in its metadata, other weights (its fingerprint,
    unless allow_other_base), or modules and shapes this model lacks."""
    base = meta.get("base_config")
    if base:
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"):
            if base.get(key) != getattr(model.config, key):
                raise PebbleError(f"{path} was trained for a base with {key}={base.get(key)}, this base has "
                                  f"{getattr(model.config, key)}; load it onto the base it was trained on")
    if meta.get("base_fingerprint") and not allow_other_base:
        here = fingerprint(model)
        if meta["base_fingerprint"] != here:
            raise PebbleError(f"{path} was trained on other base weights (fingerprint {meta['base_fingerprint']}, "
                              f"this base {here}); use its own base, or allow it explicitly")
    check_modules_fit(model, modules, path)


def adapter_metadata(name: str, rank: int, alpha: float, modules: list[str], model: nn.Module,
                     base_fingerprint: Optional[str] = None, **extra) -> dict:
    """What an adapter file says about itself: its name, rank, alpha and target layers, and the base it belongs
    to (config and fingerprint of its weights)."""
    return {"format": "pebble-lora", "name": name, "rank": rank, "alpha": alpha,
            "targets": sorted({m.split(".")[-1] for m in modules}), "dtype": "float32",
            "base_config": model.config.to_dict(), "base_fingerprint": base_fingerprint or fingerprint(model),
            **extra}


# ---------------------------------------------------------------- saving and loading

def name_from_file(path: PathLike, hidden_size: int) -> str:
    """The adapter a file holds, by MiniMind's file naming: the stem without _{hidden} (lora_medical_768.pth)."""
    return Path(path).stem.removesuffix(f"_{hidden_size}")


def adapter_modules(model: nn.Module, name: str) -> dict[str, LoRAAdapter]:
    """{module path: LoRAAdapter} of adapter `name`; an error if it is not loaded."""
    check_loaded(model, [name])
    return {p: layer.lora[name] for p, layer in lora_layers(model) if name in layer.lora}


def lora_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter `name` under MiniMind's key names: {module}.lora.A.weight and {module}.lora.B.weight."""
    return {f"{p}.lora.{ab}.weight": getattr(a, ab).weight.detach().float()
            for p, a in adapter_modules(model, name).items() for ab in "AB"}


def save_lora(model: nn.Module, path: PathLike, name: Optional[str] = None, base_fingerprint: Optional[str] = None,
              **metadata) -> Path:
    """Write one adapter (only its tensors) with rank, alpha, targets, base config and fingerprint."""
    names = adapter_names(model)
    if name is None and len(names) != 1:
        raise PebbleError(f"the model has adapters {names}; say which one to save")
    if any(layer.merged for _, layer in lora_layers(model)):
        raise PebbleError("unmerge_lora(model) before saving an adapter: the base weights are merged")
    adapters = adapter_modules(model, name or names[0])
    first = next(iter(adapters.values()))
    meta = adapter_metadata(name or names[0], first.rank, first.alpha, list(adapters), model, base_fingerprint,
                            **metadata)
    return save_tensors(lora_state_dict(model, name or names[0]), path, meta)


def load_lora(model: nn.Module, path: PathLike, name: Optional[str] = None, allow_other_base: bool = False,
              activate: bool = True) -> str:
    """Attach the adapter stored in path (ours or MiniMind's .pth) under `name` (default: the name it was saved
    under, else name_from_file) and return the name; refuses an adapter trained for another base."""
    modules, meta = read_lora(path)  # {module path: {"A": (r, in), "B": (out, r)}}
    check_fits_base(model, modules, meta, path, allow_other_base)
    name = name or meta.get("name") or name_from_file(path, model.config.hidden_size)
    check_adapter_name(name)
    if name in adapter_names(model):
        raise PebbleError(f"an adapter named {name!r} is already loaded")
    for module, pair in modules.items():
        rank = pair["A"].shape[0]
        alpha = float(meta.get("alpha", rank))  # MiniMind's files have no scale: alpha == rank
        adapter = wrap_layer(model, module).add_adapter(name, rank, alpha)
        with torch.no_grad():
            adapter.A.weight.copy_(pair["A"])
            adapter.B.weight.copy_(pair["B"])
    if activate:
        set_active_lora(model, name)
    return name
