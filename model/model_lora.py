"""LoRA adapters as explicit modules: attach, train, save, load (ours and MiniMind's), switch, merge.

A LoRALinear is an nn.Linear (its base weight keeps the key `...q_proj.weight`, so base checkpoints load
unchanged) holding any number of named low-rank adapters:

    y = W x + sum over active adapters a of  weight_a * (alpha_a / r_a) * B_a (A_a x)

Inside `adapters_per_row(model, names)` each row of a batch takes its own adapter instead (or none), so
requests for different adapters share one forward: the base matmul runs once for the whole batch, and each
adapter runs only on its rows.

Adapter files hold one adapter under MiniMind's key names (`{module}.lora.A.weight` [r, in],
`{module}.lora.B.weight` [out, r]) plus metadata (rank, alpha, targets, base config and fingerprint).
"""
import contextlib
import functools
import math
import re
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from model.checkpoint import fingerprint, load_tensors, save_model, save_tensors
from model.common import PathLike, PebbleError

ActiveSpec = Union[None, str, dict[str, float]]  # none, one adapter, or adapters with mixing weights


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context with autocast switched off on device_type, or a no-op one where it is off already."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class LoRAAdapter(nn.Module):
    """One low-rank update B A with its scale alpha / r; A starts random, B at zero (so it starts as a no-op)."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.A = nn.Linear(in_features, rank, bias=False)  # weight (r, in)
        self.B = nn.Linear(rank, out_features, bias=False)  # weight (out, r)
        nn.init.kaiming_uniform_(self.A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.B.weight)

    def forward(self, x: torch.Tensor, out_dtype: Optional[torch.dtype] = None, weight: float = 1.0) -> torch.Tensor:
        """weight * (alpha / r) * B (A x): (..., in) -> (..., out), in out_dtype (default x's dtype).

        A x runs in x's dtype and B h in out_dtype (the base layer's output dtype): only the small A, B and h
        are cast, never the activations (see LoRALinearFunction). The weights stay float32 for the optimizer.
        """
        out_dtype = out_dtype or x.dtype
        with autocast_off(x.device.type):
            h = F.linear(self.dropout(x), self.A.weight.to(x.dtype))  # (..., r)
            delta = F.linear(h.to(out_dtype), self.B.weight.to(out_dtype))  # (..., out)
        scale = self.scale * weight
        return delta if scale == 1.0 else delta * scale

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A in float32, shaped like the base weight (out, in)."""
        return (self.B.weight.float() @ self.A.weight.float()) * self.scale

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def low_rank_linear(x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                    scale: float) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(x W^T + s (x A^T) B^T, the tensors LoRALinearFunction's backward needs), computed in the autocast dtype
    where autocast is on: the forward of one adapter on a frozen linear layer, without autograd.

    The rank-r product's operand order follows the dtype: in float32 MKL runs it faster as A x^T (r, N) than as
    x A^T (N, r), 15 vs 22 us at 736 x 256 and rank 8 (bench row 8's unmerged forward 57.7 -> 55.7 ms against a
    50.2 ms base); in bf16 oneDNN is faster the other way round (21 vs 29 us).
    """
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    with autocast_off(device):
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)  # (N, in)
        wc, ac, bc = weight.to(dtype), a.to(dtype), b.to(dtype)  # (out, in), (r, in), (out, r)
        hs = (ac @ x2.t()).t() if dtype == torch.float32 else x2 @ ac.t()  # (N, r)
        hs = hs if scale == 1.0 else hs * scale
        y = (x2 @ wc.t()).addmm_(hs, bc.t())  # (N, out)
    return y.view(*x.shape[:-1], y.shape[-1]), (x2, hs, wc, ac, bc)


def one_adapter_linear(x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                       scale: float) -> torch.Tensor:
    """low_rank_linear's output alone, for inference (no grad): LoRALinear's forward there, and what its
    plain_forward binds."""
    return low_rank_linear(x, weight, a, b, scale)[0]


class LoRALinearFunction(torch.autograd.Function):
    """y = x W^T + s (x A^T) B^T for a frozen W, with a hand-written backward: the common case of LoRALinear
    (one active adapter) in fewer ops and fewer passes over the activations than autograd makes of it.

    The adapter's product is added into the base output in place and the two input gradients are summed by one
    addmm, so each activation-sized tensor is written once; everything runs in the autocast dtype (as autocast
    would run these products), and the float32 A and B receive float32 gradients. With every block linear
    adapted, the composed version made a LoRA step no faster than a full fine-tuning step (bench row 2).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float):
        y, saved = low_rank_linear(x, weight, a, b, scale)
        ctx.save_for_backward(*saved)
        ctx.scale, ctx.x_dtype, ctx.x_shape, ctx.ab_dtype = scale, x.dtype, x.shape, (a.dtype, b.dtype)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x2, hs, wc, ac, bc = ctx.saved_tensors
        dx = da = db = None
        with autocast_off(grad.device.type):
            g = grad.reshape(-1, grad.shape[-1]).to(wc.dtype)  # (N, out)
            ghs = g @ bc  # (N, r): the gradient reaching A x, scaled
            ghs = ghs if ctx.scale == 1.0 else ghs * ctx.scale
            if ctx.needs_input_grad[0]:
                dx = (g @ wc).addmm_(ghs, ac).to(ctx.x_dtype).view(ctx.x_shape)  # (N, in) -> x's shape
            if ctx.needs_input_grad[2]:
                da = (ghs.t() @ x2).to(ctx.ab_dtype[0])  # (r, in)
            if ctx.needs_input_grad[3]:
                db = (g.t() @ hs).to(ctx.ab_dtype[1])  # (out, r)
        return dx, None, da, db, None


class LoRALinear(nn.Linear):
    """nn.Linear plus named adapters, of which a weighted subset is active."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.lora = nn.ModuleDict()
        self.active: dict[str, float] = {}
        self._base_weight: Optional[torch.Tensor] = None  # the weight before merge_lora, for an exact unmerge
        # Set by adapters_per_row: (adapter, its row indices, or None for every row) and the batch size they
        # were made for; while set, `active` is ignored.
        self.routes: Optional[list[tuple[str, Optional[torch.Tensor]]]] = None
        self.route_rows = 0

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "LoRALinear":
        """Wrap an existing layer, sharing (not copying) its weight and bias."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    def add_adapter(self, name: str, rank: int, alpha: float, dropout: float = 0.0) -> LoRAAdapter:
        """Create adapter `name` on this layer (on the base weight's device, in float32)."""
        adapter = LoRAAdapter(self.in_features, self.out_features, rank, alpha, dropout).to(self.weight.device)
        self.lora[name] = adapter
        return adapter

    @property
    def merged(self) -> bool:
        return self._base_weight is not None

    def _one_adapter(self) -> Optional[tuple[torch.Tensor, torch.Tensor, float]]:
        """(A, B, scale) of the one adapter that answers every row when LoRALinearFunction computes this layer
        (one active adapter, or routes that give one adapter the whole batch): a frozen weight, no bias, not
        merged, and no dropout at work; else None."""
        if self.routes is None and len(self.active) == 1:
            (name, w), = self.active.items()
        elif self.routes is not None and len(self.routes) == 1 and self.routes[0][1] is None:
            name, w = self.routes[0][0], 1.0
        else:
            return None
        if self.merged or self.bias is not None or self.weight.requires_grad:
            return None
        adapter = self.lora[name]
        if self.training and not isinstance(adapter.dropout, nn.Identity):
            return None
        return adapter.A.weight, adapter.B.weight, adapter.scale * w

    def plain_forward(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """This layer's forward, as it stands, as a function of x alone for inference (model_pebble.bind_forward),
        or None where only the module computes it (routes, several adapters, dropout)."""
        if self.routes is not None:
            return None  # the module checks each batch against the routes' rows
        if self.merged or not self.active:
            return functools.partial(F.linear, weight=self.weight, bias=self.bias)
        one = self._one_adapter()
        if one is None:
            return None
        return functools.partial(one_adapter_linear, weight=self.weight, a=one[0], b=one[1], scale=one[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.routes is not None and x.shape[0] != self.route_rows:
            raise PebbleError(f"adapters_per_row was given {self.route_rows} adapter names but the batch has "
                              f"{x.shape[0]} rows; give one name (or None) per row")
        one = self._one_adapter()
        if one is not None:
            return LoRALinearFunction.apply(x, self.weight, *one) if torch.is_grad_enabled() else \
                one_adapter_linear(x, self.weight, *one)
        y = F.linear(x, self.weight, self.bias)  # (B, ..., out)
        if self.routes is not None:
            return self._add_routed(x, y)
        if self.merged:
            return y
        for name, w in self.active.items():
            y = y + self.lora[name](x, y.dtype, w)
        return y

    def _add_routed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y plus, on each adapter's rows of the batch (dim 0), that adapter's output; other rows keep y."""
        if self.merged:
            raise PebbleError("adapters are merged into the weights; call unmerge_lora(model) before routing "
                              "adapters per row")
        for name, rows in self.routes:
            if rows is None:  # the whole batch uses this adapter: no gather or scatter needed
                y = y + self.lora[name](x, y.dtype)
                continue
            delta = self.lora[name](x.index_select(0, rows), y.dtype)  # (b, ..., out) for this adapter's b rows
            y = y.index_add(0, rows, delta)
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
            self.weight.data = self._base_weight
            self._base_weight = None

    def extra_repr(self) -> str:
        if self.routes is not None:
            groups = " | ".join(f"{n}: " + ("all" if rows is None else ",".join(map(str, rows.tolist())))
                                for n, rows in self.routes) or "none"
            active = f"per_row=[{groups}] of {self.route_rows} rows"
        else:
            active = "active=" + (", ".join(f"{n}*{w:g}" for n, w in self.active.items()) or "none")
        return f"{super().extra_repr()}, {active}{', merged' if self.merged else ''}"


# ---------------------------------------------------------------- attaching adapters

def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """(module path, layer) for every LoRALinear in the model."""
    for path, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield path, module


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
    found = []
    for name in names:
        matches = [p for p in linears if p.split(".")[-1] == name]
        if not matches:
            have = sorted({p.split(".")[-1] for p in linears})
            raise PebbleError(f"LoRA target {name!r} matches no linear layer; choose from {', '.join(have)}")
        found += matches
    return sorted(set(found), key=list(linears).index)


def block_index(path: str) -> Optional[int]:
    """The decoder block a module path lies in ("model.layers.3.mlp.up_proj" -> 3), None outside the blocks."""
    match = re.search(r"(?:^|\.)layers\.(\d+)\.", path)
    return int(match.group(1)) if match else None


def wrap_layer(model: nn.Module, path: str) -> LoRALinear:
    """Replace the nn.Linear at path by a LoRALinear sharing its weight (no-op if already wrapped)."""
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    layer = getattr(parent, child)
    if not isinstance(layer, LoRALinear):
        layer = LoRALinear.from_linear(layer)
        setattr(parent, child, layer)
    return layer


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: Optional[float] = None,
    dropout: float = 0.0,
    targets: Union[str, list[str]] = "square",
    name: str = "default",
    verbose: bool = True,
    blocks: Optional[list[int]] = None,
) -> nn.Module:
    """Attach adapter `name` to the target layers, make it active and the only trainable weights.

    alpha defaults to rank (scale 1, as MiniMind's adapters); blocks, if given, keeps only the targets inside
    those decoder blocks (model.layers.{i}). Prints total, LoRA and trainable counts.
    """
    alpha = float(rank if alpha is None else alpha)
    check_adapter_name(name)
    paths = find_targets(model, targets)
    if blocks is not None:
        paths = [p for p in paths if block_index(p) in blocks]
        if not paths:
            raise PebbleError(f"no LoRA target lies in blocks {blocks}; the model has {model.config.num_hidden_layers}")
    for path in paths:
        layer = wrap_layer(model, path)
        if name in layer.lora:
            raise PebbleError(f"an adapter named {name!r} is already attached to {path}")
        layer.add_adapter(name, rank, alpha, dropout)
    set_active_lora(model, name)
    mark_only_lora_trainable(model, name)
    if verbose:
        print(lora_summary(model, name))
    return model


def name_from_file(path: PathLike, hidden_size: int) -> str:
    """The adapter a file holds, by MiniMind's file naming: its stem without _{hidden_size}
    (lora_identity_256.pth -> lora_identity)."""
    return Path(path).stem.removesuffix(f"_{hidden_size}")


def check_adapter_name(name: str) -> None:
    """Adapter names become module names: no dots, not empty."""
    if not name or "." in name:
        raise PebbleError(f"adapter name {name!r} must be non-empty and contain no '.'")


def mark_only_lora_trainable(model: nn.Module, name: str) -> None:
    """Freeze every parameter except those of adapter `name`."""
    for path, p in model.named_parameters():
        p.requires_grad = f".lora.{name}." in path


def lora_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Parameters of adapter `name`, keyed by their path in the model."""
    return {p: t for p, t in model.named_parameters() if f".lora.{name}." in p}


def lora_summary(model: nn.Module, name: str) -> str:
    """One line: total, LoRA and trainable parameter counts with shares."""
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    lora = sum(p.numel() for p in lora_parameters(model, name).values())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    base = total - sum(p.numel() for _, m in lora_layers(model) for p in m.lora.parameters())
    return (f"LoRA '{name}': {lora:,} parameters = {100 * lora / base:.2f}% of the {base:,}-parameter base; "
            f"trainable {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")


# ---------------------------------------------------------------- switching and combining

def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters attached to the model, in the order they were added."""
    names: list[str] = []
    for _, layer in lora_layers(model):
        names += [n for n in layer.lora if n not in names]
    return names


def set_active_lora(model: nn.Module, spec: ActiveSpec) -> None:
    """Choose the active adapters: None (base only), a name, or {name: weight} to combine several.

    Only attributes change, so switching takes microseconds and reloads nothing.
    """
    active = {} if spec is None else ({spec: 1.0} if isinstance(spec, str) else dict(spec))
    known = adapter_names(model)
    for n in active:
        if n not in known:
            raise PebbleError(f"no adapter named {n!r} is loaded; loaded: {', '.join(known) or 'none'}")
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


@contextlib.contextmanager
def adapters_per_row(model: nn.Module, names: list[Optional[str]]) -> Iterator[nn.Module]:
    """Run the block with row i of every batch answered by adapter names[i] (None: the base alone).

    One forward serves all rows: each layer computes its base output once for the whole batch, then adds each
    adapter's output to that adapter's rows only. Every forward inside the block must have len(names) rows,
    which holds through `generate` (KV cache and left padding keep the rows in place). The active set is
    ignored inside the block and routing is undone after it. One adapter for every row computes exactly as the
    active adapter does. Otherwise, under bf16 autocast, a layer's output turns float32 for the whole batch once
    any row adds a (float32) adapter output there: base rows then carry more precision than alone, so greedy
    tokens may part at bf16-level near-ties.
    Routing lives in the layers: one thread at a time may run a model with it.
    """
    if not names:
        raise PebbleError("adapters_per_row needs one adapter name (or None) per row; got an empty list")
    known = adapter_names(model)
    for n in names:
        if n is not None and n not in known:
            raise PebbleError(f"no adapter named {n!r} is loaded; loaded: {', '.join(known) or 'none'}")
    layers = list(lora_layers(model))
    if any(layer.merged for _, layer in layers):
        raise PebbleError("adapters are merged into the weights; call unmerge_lora(model) before routing adapters "
                          "per row")
    groups: dict[str, list[int]] = {}  # adapter -> its rows, in first-seen order
    for row, n in enumerate(names):
        if n is not None:
            groups.setdefault(n, []).append(row)
    indices: dict[tuple[torch.device, str], torch.Tensor] = {}  # one index tensor per device and adapter
    saved = {path: (layer.routes, layer.route_rows) for path, layer in layers}
    try:
        for _, layer in layers:
            routes = []
            for n, rows in groups.items():
                if n not in layer.lora:
                    continue  # this adapter leaves the layer alone: its rows get the base output here
                if len(rows) == len(names):
                    routes.append((n, None))
                    continue
                key = (layer.weight.device, n)
                if key not in indices:
                    indices[key] = torch.tensor(rows, dtype=torch.long, device=layer.weight.device)
                routes.append((n, indices[key]))
            layer.routes, layer.route_rows = routes, len(names)
        yield model
    finally:
        for path, layer in layers:
            layer.routes, layer.route_rows = saved[path]


# ---------------------------------------------------------------- merging

def merge_lora(model: nn.Module, out_path: Optional[PathLike] = None, permanent: bool = False,
               **metadata) -> nn.Module:
    """Fold the active adapters into the base weights (float32 math); optionally write the result as a
    plain base weight file that loads without any adapter code. Undo with unmerge_lora, unless permanent:
    then the adapters are dropped and the merged weights become the base (for training a new adapter on top)."""
    for _, layer in lora_layers(model):
        layer.merge()
        if permanent:
            layer._base_weight = None
            layer.lora = nn.ModuleDict()
            layer.active = {}
    if out_path is not None:
        save_model(model, out_path, **metadata)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Restore the exact base weights saved by merge_lora."""
    for _, layer in lora_layers(model):
        layer.unmerge()
    return model


# ---------------------------------------------------------------- files

def _only_adapter(model: nn.Module, name: Optional[str]) -> str:
    names = adapter_names(model)
    if name is None:
        if len(names) != 1:
            raise PebbleError(f"the model has adapters {names}; say which one to save")
        return names[0]
    if name not in names:
        raise PebbleError(f"no adapter named {name!r}; the model has {names}")
    return name


def lora_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter `name` under MiniMind's key names: {module}.lora.A.weight and {module}.lora.B.weight."""
    out = {}
    for path, layer in lora_layers(model):
        if name in layer.lora:
            out[f"{path}.lora.A.weight"] = layer.lora[name].A.weight.detach().float()
            out[f"{path}.lora.B.weight"] = layer.lora[name].B.weight.detach().float()
    return out


def save_lora(model: nn.Module, path: PathLike, name: Optional[str] = None, base_fingerprint: Optional[str] = None,
              **metadata) -> Path:
    """Write one adapter (only its tensors) with rank, alpha, targets, base config and fingerprint."""
    name = _only_adapter(model, name)
    layers = [(p, layer.lora[name]) for p, layer in lora_layers(model) if name in layer.lora]
    merged = any(layer.merged for _, layer in lora_layers(model))
    if merged:
        raise PebbleError("unmerge_lora(model) before saving an adapter: the base weights are merged")
    meta = {
        "format": "pebble-lora",
        "name": name,
        "rank": layers[0][1].rank,
        "alpha": layers[0][1].alpha,
        "targets": sorted({p.split(".")[-1] for p, _ in layers}),
        "dtype": "float32",
        "base_config": model.config.to_dict(),
        "base_fingerprint": base_fingerprint or fingerprint(model),
        **metadata,
    }
    return save_tensors(lora_state_dict(model, name), path, meta)


def read_lora(path: PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Read an adapter file (ours or MiniMind's .pth) -> ({module path: {"A", "B"}}, metadata)."""
    tensors, meta = load_tensors(path)
    if meta and meta.get("format") not in (None, "pebble-lora"):
        raise PebbleError(f"{path} is a {meta.get('format')} file, not a LoRA adapter")
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        head, sep, tail = key.rpartition(".lora.")
        if not sep or tail not in ("A.weight", "B.weight"):
            raise PebbleError(f"{path} has key {key!r}, which is not a LoRA tensor ({{module}}.lora.A/B.weight)")
        modules.setdefault(head, {})[tail[0]] = value
    for module, pair in modules.items():
        if set(pair) != {"A", "B"}:
            raise PebbleError(f"{path} is incomplete: {module} has only lora.{''.join(pair)}")
    if not modules:
        raise PebbleError(f"{path} holds no LoRA tensors")
    return modules, meta


def load_lora(model: nn.Module, path: PathLike, name: Optional[str] = None, allow_other_base: bool = False,
              activate: bool = True) -> str:
    """Attach the adapter stored in path under `name` (default: the file's stem) and return the name.

    Checks that the adapter fits this base: the module paths and shapes, the base config, and (unless
    allow_other_base) the fingerprint of the base weights it was trained on.
    """
    path = Path(path)
    modules, meta = read_lora(path)
    name = name or meta.get("name") or name_from_file(path, model.config.hidden_size)
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
    linears = {p: m for p, m in model.named_modules() if isinstance(m, nn.Linear)}
    for module, pair in modules.items():
        layer = linears.get(module)
        if layer is None:
            raise PebbleError(f"{path} adapts {module}, which this model does not have; it is for another base")
        rank = pair["A"].shape[0]
        if pair["A"].shape != (rank, layer.in_features) or pair["B"].shape != (layer.out_features, rank):
            raise PebbleError(f"{path}: {module} has A {tuple(pair['A'].shape)} and B {tuple(pair['B'].shape)}, "
                              f"which do not fit a {layer.in_features}->{layer.out_features} layer; wrong base")
    check_adapter_name(name)
    if name in adapter_names(model):
        raise PebbleError(f"an adapter named {name!r} is already loaded")
    for module, pair in modules.items():
        rank = pair["A"].shape[0]
        alpha = float(meta.get("alpha", rank))  # MiniMind's adapters have no scale: alpha == rank
        adapter = wrap_layer(model, module).add_adapter(name, rank, alpha)
        with torch.no_grad():
            adapter.A.weight.copy_(pair["A"])
            adapter.B.weight.copy_(pair["B"])
    if activate:
        set_active_lora(model, name)
    return name
