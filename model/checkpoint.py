"""Weight files: where they live, how they are written (atomically) and read (ours and MiniMind's).

We write safetensors with the model config in the file's metadata, so a file rebuilds its own model.
MiniMind's `.pth` files are plain state_dicts: they are read with weights_only=True and their config is
inferred from the tensor shapes.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.model_pebble import PebbleConfig, PebbleForCausalLM

REPO_ROOT = Path(__file__).resolve().parent.parent
PathLike = Union[str, os.PathLike]


class PebbleError(Exception):
    """A mistake a user can make (bad file, wrong base, bad data): scripts print it as one line and exit."""


def repo_path(path: PathLike) -> Path:
    """Resolve a relative path against the repo root (so scripts work from any working directory)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path), fsync it, then rename over path: a reader never sees a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise PebbleError(f"cannot write to {path.parent}: {e.strerror}; choose a writable --save_dir") from e
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; weights are meant to be shared
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise PebbleError(f"could not write {path}: {e.strerror}; nothing was overwritten") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_tensors(tensors: dict[str, torch.Tensor], path: PathLike, metadata: dict) -> Path:
    """Write tensors as safetensors atomically; metadata values that are not strings are stored as JSON."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path: PathLike) -> dict:
    """The metadata of a safetensors file, with JSON values decoded."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise PebbleError(f"{path} is not a readable safetensors file ({e}); re-download or re-train it") from e
    out = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def load_tensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file or a `.pth` state_dict (tensors only) -> (tensors, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise PebbleError(f"{path} does not exist; check the name and --save_dir")
    if path.suffix == ".safetensors":
        metadata = read_metadata(path)
        try:
            return load_file(str(path)), metadata
        except (SafetensorError, OSError) as e:
            raise PebbleError(f"{path} is truncated or corrupted ({e}); re-download or re-train it") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refuses non-tensor objects; any failure here is the file's fault
        raise PebbleError(
            f"{path} is not a plain tensor state_dict (refused to unpickle it: {str(e).splitlines()[0]})"
        ) from e
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PebbleError(f"{path} does not hold a state_dict of tensors; it cannot be loaded as weights")
    return {k.removeprefix("module."): v for k, v in obj.items()}, {}


def weight_path(save_dir: PathLike, name: str, hidden_size: int) -> Path:
    """out/NAME_{hidden}.safetensors (ours) or out/NAME_{hidden}.pth (MiniMind's); error if neither exists."""
    save_dir = repo_path(save_dir)
    candidates = [save_dir / f"{name}_{hidden_size}.safetensors", save_dir / f"{name}_{hidden_size}.pth"]
    for path in candidates:
        if path.is_file():
            return path
    have = sorted(p.name for p in save_dir.glob("*_*.*") if p.suffix in (".safetensors", ".pth"))
    raise PebbleError(
        f"no weights named {name!r} for hidden_size {hidden_size}: looked for {candidates[0]} and "
        f"{candidates[1].name}; found {have or 'nothing'} in {save_dir}"
    )


def config_from_state_dict(sd: dict[str, torch.Tensor], num_attention_heads: int = 8) -> PebbleConfig:
    """Infer a PebbleConfig from MiniMind-layout tensor shapes (heads are not stored; head_dim is if q_norm is)."""
    try:
        vocab, hidden = sd["model.embed_tokens.weight"].shape
        layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("model.layers."))
        q_out = sd["model.layers.0.self_attn.q_proj.weight"].shape[0]
        kv_out = sd["model.layers.0.self_attn.k_proj.weight"].shape[0]
        inter = sd["model.layers.0.mlp.gate_proj.weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise PebbleError(f"these weights do not have the MiniMind/Pebble key layout (missing {e})") from e
    qk_norm = "model.layers.0.self_attn.q_norm.weight" in sd
    head_dim = sd["model.layers.0.self_attn.q_norm.weight"].shape[0] if qk_norm else q_out // num_attention_heads
    return PebbleConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=q_out // head_dim,
        num_key_value_heads=kv_out // head_dim, head_dim=head_dim, intermediate_size=inter,
        vocab_size=vocab, qk_norm=qk_norm,
    )


def state_dict_to_save(model: torch.nn.Module, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """The model's base weights (no adapters, tied lm_head dropped), optionally cast to dtype."""
    tied = getattr(model.config, "tie_word_embeddings", False)
    out = {}
    for k, v in model.state_dict().items():
        if ".lora" in k or (tied and k == "lm_head.weight"):
            continue
        out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    return out


def save_model(model: PebbleForCausalLM, path: PathLike, dtype: Optional[torch.dtype] = None, **extra) -> Path:
    """Write the model's base weights and config (plus any extra metadata) to a safetensors file."""
    sd = state_dict_to_save(model, dtype)
    if dtype == torch.float16 and not all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()):
        sd = state_dict_to_save(model, torch.float32)  # a weight overflows fp16: keep full precision
    return save_tensors(sd, path, {"format": "pebble-model", "config": model.config.to_dict(), **extra})


def load_model(
    path: PathLike, device: Union[str, torch.device] = "cpu", num_attention_heads: int = 8
) -> PebbleForCausalLM:
    """Rebuild a model from one of our safetensors files or a MiniMind `.pth` and load it with strict keys."""
    sd, meta = load_tensors(path)
    if "config" in meta:
        config = PebbleConfig.from_dict(meta["config"])
    else:
        config = config_from_state_dict(sd, num_attention_heads)
    model = PebbleForCausalLM(config)
    if config.tie_word_embeddings:
        sd.setdefault("lm_head.weight", sd.get("model.embed_tokens.weight"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise PebbleError(
            f"{path} does not match a Pebble model: missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}"
        )
    return model.to(device)


def fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the base weights (as float16), so an adapter can tell which base it was trained on."""
    h = hashlib.sha256()
    for k, v in sorted(state_dict_to_save(model, torch.float16).items()):
        h.update(k.encode())
        h.update(v.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
