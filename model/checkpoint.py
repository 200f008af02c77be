"""Weight files: how they are written (atomically) and read (ours and MiniMind's); model/loading.py finds them.

We write safetensors with the model config in the file's metadata, so a file rebuilds its own model.
MiniMind's `.pth` files are plain state_dicts: they are read with weights_only=True and their config is
inferred from the tensor shapes. Every size a file claims is checked against the file (and every config against
its tensors) before anything is allocated; a tensor holding NaN or inf is never written; exclusive_run keeps two
runs from writing one file.
"""
import fcntl
import glob
import hashlib
import json
import math
import os
import pickle
import re
import socket
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.common import PathLike, PebbleError
from model.model_pebble import Block, PebbleConfig, PebbleForCausalLM


def cannot_write(folder: Path, e: OSError) -> PebbleError:
    """The error for a folder we cannot create files in."""
    return PebbleError(f"cannot write to {folder}: {e.strerror}; choose a writable --save_dir")


# ---------------------------------------------------------------- writing

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"  # no dots: temp names are split on them
STALE_TEMP_SECONDS = 3600  # older than this, a temp file is a crash's leftover even if its pid was reused


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: PathLike) -> list[Path]:
    """Delete the temp files that writes of path left behind when they were killed; returns the ones removed.

    atomic_write names them .NAME.HOST.PID.RANDOM.tmp. One is stale when its writer ran on this host and is gone,
    or when it is over an hour old (a writer on another host sharing the folder, or the older .NAME.RANDOM.tmp).
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        parts = tmp.name[len(prefix):-len(".tmp")].split(".")
        if len(parts) not in (1, 3):  # a temp file of another target, such as NAME.more
            continue
        writer_gone = len(parts) == 3 and parts[0] == HOST and parts[1].isdigit() and not pid_alive(int(parts[1]))
        try:
            if writer_gone or time.time() - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # renamed into place or removed by someone else meanwhile
            continue
    return removed


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path), fsync it, then rename over path: a reader never sees a half-written file.

    Temp files left by killed earlier writes of the same path are removed first (see remove_stale_temps)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise cannot_write(path.parent, e) from e
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
    """Write tensors as safetensors atomically; metadata values that are not strings are stored as JSON.

    A floating tensor holding NaN or inf is refused, so a diverged run never replaces a good file."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            what = "NaN" if v.isnan().any() else "an infinite value"
            kept = "the previous file is unchanged" if Path(path).exists() else "nothing was saved"
            raise PebbleError(f"{path} was not written: tensor {k!r} holds {what}; {kept}")
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


@contextmanager
def exclusive_run(path: PathLike) -> Iterator[Path]:
    """Hold a lock on path while a run writes it, so two runs cannot write one file; the OS drops it if we die.

    The lock is an flock on .NAME.lock next to path, which holds the pid of the run that has it."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise cannot_write(lock.parent, e) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise PebbleError(f"another run is writing {path} (pid {holder}); wait for it or choose another name") \
                from None
        except OSError as e:  # a file system without locks
            raise PebbleError(f"cannot lock {lock}: {e.strerror}; choose a --save_dir on a local disk") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the file releases the lock


# ---------------------------------------------------------------- reading

SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
                        "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # how torch.save's pre-1.6 format begins


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked against the file's size before any tensor is read.

    The file is an 8-byte little-endian header length, the JSON header, then the tensor bytes. Every tensor's
    data_offsets must lie inside those bytes and span exactly itemsize x shape, so that loading the file never
    allocates more than the file holds."""
    def invalid(why: str) -> PebbleError:
        return PebbleError(f"{path} is not a valid safetensors file ({why}); re-download or re-train it")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or not 2 <= length <= min(size - 8, MAX_HEADER_BYTES):
                raise invalid(f"its header claims {length} bytes of a {size}-byte file")
            header = json.loads(f.read(length))
    except OSError as e:
        raise PebbleError(f"cannot read {path}: {e.strerror}; check the name and --save_dir") from e
    except ValueError as e:  # bad UTF-8 or JSON
        raise invalid("its header is not JSON") from e
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise invalid("its header is not a JSON object of tensors")
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            shape = entry["shape"]
            well_formed = all(type(n) is int and n >= 0 for n in (begin, end, *shape))
            nbytes = SAFETENSORS_ITEMSIZE[entry["dtype"]] * math.prod(shape) if well_formed else -1
        except (KeyError, TypeError, ValueError):
            well_formed = False
        if not well_formed:
            raise invalid(f"tensor {name!r} has a malformed entry")
        if not begin <= end <= data_bytes or end - begin != nbytes:
            raise invalid(f"tensor {name!r} claims bytes {begin}..{end} and {nbytes} bytes for its dtype and "
                          f"shape, but the file holds {data_bytes} bytes of tensors")
    return header


def read_metadata(path: PathLike) -> dict:
    """The metadata of a safetensors file (its header checked by safetensors_header), with JSON values decoded."""
    out = {}
    for k, v in safetensors_header(Path(path)).get("__metadata__", {}).items():
        try:
            out[k] = json.loads(v)
        except (TypeError, json.JSONDecodeError):
            out[k] = v
    return out


def check_torch_file(path: Path) -> None:
    """Refuse a `.pth` that is not torch.save's zip archive, or whose records claim more bytes than the file has.

    torch allocates each record's claimed size before reading it, so a small crafted file could ask for any amount.
    The pre-1.6 format is refused too: it also allocates claimed sizes, which cannot be checked beforehand."""
    with open(path, "rb") as f:
        if f.read(len(TORCH_LEGACY_MAGIC)) == TORCH_LEGACY_MAGIC:
            raise PebbleError(f"{path} uses PyTorch's pre-1.6 file format, which Pebble does not read; re-save its "
                              "state_dict with torch.save from a current PyTorch")
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise PebbleError(f"{path} is not a PyTorch weights file or is corrupted ({e}); re-download or re-train it") \
            from None
    size = path.stat().st_size
    for r in records:
        if r.header_offset + r.file_size > size:  # torch stores records uncompressed
            raise PebbleError(f"{path} is corrupted: its record {r.filename} claims {r.file_size} bytes but the "
                              f"file has {size}; re-download or re-train it")


def load_pth(path: Path) -> dict[str, torch.Tensor]:
    """A `.pth` (or `.bin`) state_dict of tensors, read with weights_only=True once check_torch_file passed."""
    check_torch_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))  # torch names the class it refused to rebuild
        if found:
            raise PebbleError(f"{path} holds objects other than tensors ({found.group(1)}); Pebble reads only a "
                              "state_dict of tensors, so save model.state_dict() instead") from None
        raise PebbleError(f"{path} is corrupted (its data.pkl does not unpickle); re-download or re-train it") \
            from None
    except Exception as e:  # the archive reader and storage checks: the file is damaged
        raise PebbleError(f"{path} is truncated or corrupted ({str(e).splitlines()[0]}); re-download or re-train it") \
            from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PebbleError(f"{path} holds objects other than tensors; Pebble reads only a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_tensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file or a `.pth` state_dict (tensors only) -> (tensors, metadata), sizes checked first."""
    path = Path(path)
    if not path.is_file():
        raise PebbleError(f"{path} does not exist; check the name and --save_dir")
    if path.suffix != ".safetensors":
        return load_pth(path), {}
    metadata = read_metadata(path)
    try:
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as e:
        raise PebbleError(f"{path} is truncated or corrupted ({e}); re-download or re-train it") from e


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


def check_fits_config(sd: dict[str, torch.Tensor], config: PebbleConfig, path: PathLike) -> None:
    """Refuse tensors that are not exactly those of the model config describes, before that model is allocated.

    A file's config may describe a far larger model than its tensors (a crafted 200-byte file asking for 50 GB),
    so the expected shapes come from a block built on the meta device, which allocates nothing."""
    layers = {k.split(".")[2] for k in sd if k.startswith("model.layers.")}
    if layers != {str(i) for i in range(config.num_hidden_layers)}:  # also bounds the expected shapes built below
        raise PebbleError(f"{path} holds tensors for {len(layers)} layers but its config says "
                          f"{config.num_hidden_layers}; it is damaged or not a Pebble/MiniMind model")
    with torch.device("meta"):  # one block; not the whole model, whose embedding's random init would run here too
        block = {k: v.shape for k, v in Block(config, 0).state_dict().items()}
    table = (config.vocab_size, config.hidden_size)
    expected = {"model.embed_tokens.weight": table, "model.norm.weight": (config.hidden_size,),
                "lm_head.weight": table, **{f"model.layers.{i}.{k}": shape for i in range(config.num_hidden_layers)
                                            for k, shape in block.items()}}
    got = {k: v.shape for k, v in sd.items()}
    if got != expected:
        missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        reshaped = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        raise PebbleError(f"{path} does not match the model its config describes: missing {missing[:4]}, "
                          f"unexpected {unexpected[:4]}, other shapes {reshaped[:4]}")


def load_model(
    path: PathLike, device: Union[str, torch.device] = "cpu", num_attention_heads: int = 8
) -> PebbleForCausalLM:
    """Rebuild a model from one of our safetensors files or a MiniMind `.pth` and load it with strict keys."""
    sd, meta = load_tensors(path)
    if "config" in meta:
        config = PebbleConfig.from_dict(meta["config"])
    else:
        config = config_from_state_dict(sd, num_attention_heads)
    if config.tie_word_embeddings and "model.embed_tokens.weight" in sd:
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    check_fits_config(sd, config, path)
    model = PebbleForCausalLM(config)
    model.load_state_dict(sd)
    return model.to(device)


def fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the base weights (as float16), so an adapter can tell which base it was trained on."""
    h = hashlib.sha256()
    for k, v in sorted(state_dict_to_save(model, torch.float16).items()):
        h.update(k.encode())
        h.update(v.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
