"""LoRA adapters as explicit modules: attach, switch, mix, merge, save and load (ours and MiniMind's files).

A LoRALinear is an nn.Linear (its base weight keeps the key `...q_proj.weight`, so base checkpoints load
unchanged) holding any number of named low-rank adapters, of which a weighted set is active:

    y = W x + sum over active adapters a of  weight_a * (alpha_a / r_a) * B_a (A_a dropout(x))

That one forward is all the maths: model/lora_routing.py gives each row of a batch its own adapter through it,
model/fast_lora.py computes the same in fewer passes (model/fast_paths.py); adapter files: model/lora_files.py.
"""
import contextlib
import math
from typing import Iterable, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from model.checkpoint import save_model
from model.common import PathLike, PebbleError

ActiveSpec = Union[None, str, dict[str, float]]  # none, one adapter, or adapters with mixing weights


class LoRAAdapter(nn.Module):
    """One low-rank update (alpha / r) B A; A starts random and B at zero, so a new adapter changes nothing."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.A = nn.Linear(in_features, rank, bias=False)  # weight (r, in)
        self.B = nn.Linear(rank, out_features, bias=False)  # weight (out, r)
        nn.init.kaiming_uniform_(self.A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.B(self.A(self.dropout(x))) * self.scale  # (..., in) -> (..., r) -> (..., out)

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A in float32, shaped like the base weight (out, in)."""
        return (self.B.weight.float() @ self.A.weight.float()) * self.scale


class LoRALinear(nn.Linear):
    """nn.Linear plus named adapters, of which a weighted subset is active."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.lora = nn.ModuleDict()
        self.active: dict[str, float] = {}
        self.routes = None  # while a batch is routed per row: its lora_routing.Routes
        self._base_weight: Optional[torch.Tensor] = None  # the weight before merge(), for an exact unmerge

    def add_adapter(self, name: str, rank: int, alpha: float, dropout: float = 0.0) -> LoRAAdapter:
        """Create adapter `name` on this layer (on the base weight's device, in float32)."""
        self.lora[name] = LoRAAdapter(self.in_features, self.out_features, rank, alpha, dropout).to(self.weight.device)
        return self.lora[name]

    @property
    def merged(self) -> bool:
        return self._base_weight is not None

    def weights(self, rows: int) -> dict[str, Union[float, torch.Tensor]]:
        """The adapters this forward adds, with their weights: the active ones, or while the batch is routed
        per row (model/lora_routing.py) each routed adapter with the 0/1 mask of its rows."""
        if self.routes is not None:
            return self.routes.weights(rows, self.merged)
        return {} if self.merged else self.active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (B, ..., out)
        for name, weight in self.weights(x.shape[0]).items():
            y = y + weight * self.lora[name](x)
        return y

    def merge(self) -> None:
        """Fold the active adapters into the weight (in float32); idempotent."""
        if self.merged or not self.active:
            return
        self._base_weight = self.weight.data.clone()
        delta = sum(self.lora[n].delta_weight() * w for n, w in self.active.items())
        self.weight.data = (self.weight.data.float() + delta).to(self.weight.dtype)

    def unmerge(self) -> None:
        """Restore the exact weight from before merge()."""
        if self.merged:
            self.weight.data, self._base_weight = self._base_weight, None

    def extra_repr(self) -> str:
        active = "active=" + (", ".join(f"{n}*{w:g}" for n, w in self.active.items()) or "none")
        return f"{super().extra_repr()}, {self.routes or active}{', merged' if self.merged else ''}"


# ---------------------------------------------------------------- attaching adapters

def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """(module path, layer) for every LoRALinear in the model."""
    return ((path, m) for path, m in model.named_modules() if isinstance(m, LoRALinear))


def find_targets(model: nn.Module, targets: Union[str, list[str]]) -> list[str]:
    """Module paths to adapt: "square" means every nn.Linear with in == out features (MiniMind's rule), "all"
    every linear layer of the decoder blocks (attention and MLP; not lm_head), otherwise a list (or
    comma-separated string) of module names such as q_proj,v_proj."""
    linears = {p: m for p, m in model.named_modules()
               if isinstance(m, nn.Linear) and ".lora." not in p and p != "lm_head"}
    if targets == "all":
        return list(linears)
    if targets == "square":
        found = [p for p, m in linears.items() if m.in_features == m.out_features]
        if not found:
            raise PebbleError("no square linear layer in this model; name the targets, e.g. q_proj,v_proj")
        return found
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    have = sorted({p.split(".")[-1] for p in linears})
    if unknown := [name for name in names if name not in have]:
        raise PebbleError(f"LoRA target {unknown[0]!r} matches no linear layer; choose from {', '.join(have)}")
    return [p for p in linears if p.split(".")[-1] in names]


def wrap_layer(model: nn.Module, path: str) -> LoRALinear:
    """Replace the nn.Linear at path by a LoRALinear sharing its weight (no-op if already wrapped)."""
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    layer = getattr(parent, child)
    if not isinstance(layer, LoRALinear):
        wrapped = LoRALinear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        wrapped.weight, wrapped.bias = layer.weight, layer.bias  # shared, not copied
        setattr(parent, child, wrapped)
    return getattr(parent, child)


def apply_lora(model: nn.Module, rank: int = 8, alpha: Optional[float] = None, dropout: float = 0.0,
               targets: Union[str, list[str]] = "square", name: str = "default", verbose: bool = True,
               blocks: Optional[list[int]] = None) -> nn.Module:
    """Attach adapter `name` to the target layers, make it active and the only trainable weights.

    alpha defaults to rank (scale 1, as MiniMind's adapters); blocks, if given, keeps only the targets inside
    those decoder blocks (model.layers.{i}). Prints total, LoRA and trainable counts.
    """
    check_adapter_name(name)
    paths = find_targets(model, targets)
    if blocks is not None:  # a path in block i holds "layers.{i}."
        paths = [p for p in paths if any(f"layers.{i}." in p for i in blocks)]
        if not paths:
            raise PebbleError(f"no LoRA target lies in blocks {blocks}; the model has {model.config.num_hidden_layers}")
    for path in paths:
        layer = wrap_layer(model, path)
        if name in layer.lora:
            raise PebbleError(f"an adapter named {name!r} is already attached to {path}")
        layer.add_adapter(name, rank, float(rank if alpha is None else alpha), dropout)
    set_active_lora(model, name)
    mark_only_lora_trainable(model, name)
    if verbose:
        print(lora_summary(model, name))
    return model


def check_adapter_name(name: str) -> None:
    """Adapter names become module names: no dots, not empty."""
    if not name or "." in name:
        raise PebbleError(f"adapter name {name!r} must be non-empty and contain no '.'")


def mark_only_lora_trainable(model: nn.Module, name: str) -> None:
    """Freeze every parameter except those of adapter `name`."""
    for path, p in model.named_parameters():
        p.requires_grad = f".lora.{name}." in path


def lora_summary(model: nn.Module, name: str) -> str:
    """One line: total, LoRA and trainable parameter counts with shares."""
    total = sum(p.numel() for p in model.parameters())  # parameters() counts the tied head once
    lora = sum(p.numel() for _, m in lora_layers(model) if name in m.lora for p in m.lora[name].parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = total - sum(p.numel() for _, m in lora_layers(model) for p in m.lora.parameters())
    return (f"LoRA '{name}': {lora:,} parameters = {100 * lora / base:.2f}% of the {base:,}-parameter base; "
            f"trainable {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")


# ---------------------------------------------------------------- switching and mixing

def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters attached to the model, in the order they were added."""
    return list(dict.fromkeys(n for _, layer in lora_layers(model) for n in layer.lora))


def check_loaded(model: nn.Module, names: Iterable[Optional[str]]) -> None:
    """Every name (None aside) must be an adapter attached to the model."""
    known = adapter_names(model)
    for n in names:
        if n is not None and n not in known:
            raise PebbleError(f"no adapter named {n!r} is loaded; loaded: {', '.join(known) or 'none'}")


def set_active_lora(model: nn.Module, spec: ActiveSpec) -> None:
    """Choose the active adapters: None (base only), a name, or {name: weight} to mix several.

    Only attributes change, so switching takes microseconds and reloads nothing."""
    active = {} if spec is None else ({spec: 1.0} if isinstance(spec, str) else dict(spec))
    check_loaded(model, active)
    for _, layer in lora_layers(model):
        if layer.merged:
            raise PebbleError("adapters are merged into the weights; call unmerge_lora(model) before switching")
        layer.active = {n: w for n, w in active.items() if n in layer.lora}


@contextlib.contextmanager
def adapter_active(model: nn.Module, spec: ActiveSpec) -> Iterator[nn.Module]:
    """Run the block with only `spec` active (None: the base alone); the previous choice comes back after."""
    saved = {path: dict(layer.active) for path, layer in lora_layers(model)}
    try:
        set_active_lora(model, spec)
        yield model
    finally:
        for path, layer in lora_layers(model):
            layer.active = saved[path]


def lora_disabled(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Run the base model alone inside the block; the previous active set comes back afterwards."""
    return adapter_active(model, None)


# ---------------------------------------------------------------- merging

def merge_lora(model: nn.Module, out_path: Optional[PathLike] = None, permanent: bool = False,
               **metadata) -> nn.Module:
    """Fold the active adapters into the base weights (float32 math); optionally write the result as a
    plain base weight file that loads without any adapter code. Undo with unmerge_lora, unless permanent:
    then the adapters are dropped and the merged weights become the base (for training a new adapter on top)."""
    for _, layer in lora_layers(model):
        layer.merge()
        if permanent:
            layer._base_weight, layer.lora, layer.active = None, nn.ModuleDict(), {}
    if out_path is not None:
        save_model(model, out_path, **metadata)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Restore the exact base weights saved by merge_lora."""
    for _, layer in lora_layers(model):
        layer.unmerge()
    return model
