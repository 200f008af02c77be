"""Finding and loading what a script works with: the tokenizer, a base by name (SAVE_DIR/NAME_{hidden}.*), its
adapters (SAVE_DIR/lora/NAME_{hidden}.*), or a transformers folder; each checked against the tokenizer."""
import contextlib
import json
from pathlib import Path

from model.checkpoint import load_model
from model.common import PathLike, PebbleError, repo_path
from model.lora_files import load_lora, name_from_file

NOT_ADAPTER_NAMES = ("base", "off")  # labels and chat commands that an adapter's name would make ambiguous


FAST_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")  # the last is transformers 5's name


def load_tokenizer(path: PathLike):
    """The tokenizer in a directory (ours or MiniMind's), with a clear error if it holds none.

    What AutoTokenizer returns, found faster: where tokenizer_config.json names the plain fast tokenizer (ours and
    MiniMind's do) that class is imported directly, which skips AutoTokenizer's import of every model family's
    tokenizer table, a large part of every script's start-up. Any other class goes through AutoTokenizer.
    """
    directory = repo_path(path)
    config_path, has_json = directory / "tokenizer_config.json", (directory / "tokenizer.json").is_file()
    if not has_json and not config_path.is_file():
        raise PebbleError(f"{directory} holds no tokenizer.json; pass --tokenizer_path DIR or run "
                          "python trainer/train_tokenizer.py")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PebbleError(f"{config_path} is not valid JSON ({e}); restore it from the tokenizer's source") from e
    if has_json and config.get("tokenizer_class") in FAST_TOKENIZER_CLASSES:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def check_tokenizer_fits(tokenizer, model, source: str) -> None:
    """A tokenizer with more tokens than the model's embedding table is the wrong one: say so."""
    if len(tokenizer) > model.config.vocab_size:
        raise PebbleError(f"the tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size} "
                          f"({source}); pass the --tokenizer_path the model was trained with")


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


def load_base(save_dir: Path, weight: str, hidden_size: int, num_hidden_layers: int, tokenizer, device: str):
    """The base model from SAVE_DIR/WEIGHT_{hidden}.* in eval mode -> (model, path), checked against the
    tokenizer and (if given) --num_hidden_layers."""
    path = weight_path(save_dir, weight, hidden_size)
    model = load_model(path, device).eval()
    layers = model.config.num_hidden_layers
    if num_hidden_layers and num_hidden_layers != layers:
        raise PebbleError(f"{path} has {layers} layers, not --num_hidden_layers {num_hidden_layers}; "
                          "drop the flag (the file knows its shape) or pick the matching --weight")
    check_tokenizer_fits(tokenizer, model, str(path))
    return model, path


def load_transformers(folder: Path, tokenizer, device: str):
    """A transformers folder (scripts/convert_model.py hf) as AutoModelForCausalLM in eval mode -> (model,
    folder), checked against the tokenizer; remote code runs only where its config names it (an export with
    --remote_code, whose code is our model_pebble.py)."""
    from transformers import AutoModelForCausalLM

    remote = "auto_map" in json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=remote).to(device).eval()
    check_tokenizer_fits(tokenizer, model, str(folder))
    return model, folder


def parse_names(spec: str) -> list[str]:
    """--lora_weight 'a,b' -> ['a', 'b']; MiniMind's 'None' (any case) or '' -> []."""
    return [n.strip() for n in spec.split(",") if n.strip() and n.strip().lower() != "none"]


def adapter_files(lora_dir: Path, hidden_size: int) -> list[Path]:
    """The adapter files (.safetensors or MiniMind's .pth) for this hidden size in lora_dir, sorted by name."""
    return sorted(p for p in lora_dir.glob(f"*_{hidden_size}.*") if p.suffix in (".safetensors", ".pth"))


def adapter_path(save_dir: Path, name: str, hidden_size: int) -> Path:
    """SAVE_DIR/lora/NAME_{hidden}.* (or MiniMind's SAVE_DIR/NAME_{hidden}.*); NAME may leave out 'lora_'."""
    stems = dict.fromkeys((name, f"lora_{name}"))  # ordered and unique
    for directory in (save_dir / "lora", save_dir):
        for stem in stems:
            with contextlib.suppress(PebbleError):
                return weight_path(directory, stem, hidden_size)
    lora_dir = save_dir / "lora"
    have = [p.name for p in adapter_files(lora_dir, hidden_size)]
    raise PebbleError(f"no adapter file for {name!r} with hidden_size {hidden_size} in {lora_dir} or {save_dir} "
                      f"(found: {', '.join(have) or 'none'}); train one with python trainer/train_lora.py")


def load_adapter(model, path: Path) -> str:
    """Attach the adapter in path (inactive), named after the file (model_lora.name_from_file)."""
    name = name_from_file(path, model.config.hidden_size)
    if name in NOT_ADAPTER_NAMES:
        raise PebbleError(f"{path}: an adapter cannot be called {name!r} (a chat command uses it); rename the file")
    return load_lora(model, path, name=name, activate=False)
