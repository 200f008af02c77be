"""A faster LoRALinear for its common case, one adapter on a frozen layer (opt-in: model/fast_paths.py).

FusedLoRALinear computes LoRALinear's forward, y = x W^T + s (x A^T) B^T (up to the order of float sums), with a
hand-written backward in training and without autograd in inference. Each activation-sized tensor is written
once: the adapter's product is added into the base output in place, and the two input gradients are summed by one
addmm. Everything runs in the autocast dtype (as autocast would run these products), casting the small A and B
instead of the activations, and the float32 A and B receive float32 gradients. Rows routed to different adapters
(model/lora_routing.py) run each adapter on its own rows only. Any other case (several active adapters, dropout
at work, a bias, a trainable base) runs LoRALinear's own forward.
Why and by how much: bench/README.md ("What each change bought"). tests/test_fast_paths.py checks it against
the plain path and against autograd of the formula.
"""
import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from model.model_lora import LoRALinear, lora_layers
from model.model_pebble import autocast_off


def low_rank_linear(x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                    scale: float) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(x W^T + s (x A^T) B^T, the tensors LoRALinearFunction's backward needs), computed in the autocast dtype
    where autocast is on, without autograd.

    The rank-r product's operand order follows the dtype: in float32 MKL runs it faster as A x^T (r, N) than as
    x A^T (N, r), in bf16 oneDNN the other way round.
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


def low_rank(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """s (x A^T) B^T alone, (..., in) -> (..., out), in the autocast dtype where autocast is on."""
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    with autocast_off(device):
        h = F.linear(x.to(dtype), a.to(dtype))  # (..., r)
        return F.linear(h if scale == 1.0 else h * scale, b.to(dtype))


def one_adapter_linear(x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                       scale: float) -> torch.Tensor:
    """low_rank_linear's output alone: FusedLoRALinear's forward without grad."""
    return low_rank_linear(x, weight, a, b, scale)[0]


class LoRALinearFunction(torch.autograd.Function):
    """y = x W^T + s (x A^T) B^T for a frozen W, with a hand-written backward (see the module's docstring)."""

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


class FusedLoRALinear(LoRALinear):
    """LoRALinear whose one-adapter case runs LoRALinearFunction (training) or one_adapter_linear (inference)."""

    def single_adapter(self, rows: int) -> Optional[tuple[torch.Tensor, torch.Tensor, float]]:
        """(A, B, scale) of the one adapter that answers all `rows` rows of the batch, where the fused product
        computes this layer; else None."""
        if self.merged or self.bias is not None or self.weight.requires_grad:
            return None
        weights = self.weights(rows)
        if len(weights) != 1:
            return None
        (name, weight), = weights.items()
        adapter = self.lora[name]
        if torch.is_tensor(weight) or (self.training and not isinstance(adapter.dropout, nn.Identity)):
            return None  # some rows only, or dropout at work
        return adapter.A.weight, adapter.B.weight, adapter.scale * weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = self.single_adapter(x.shape[0])
        if one is not None:
            if torch.is_grad_enabled():
                return LoRALinearFunction.apply(x, self.weight, *one)
            return one_adapter_linear(x, self.weight, *one)
        if self.routes is not None and self.routes.rows and not torch.is_grad_enabled():
            return self.routed_forward(x)
        return super().forward(x)

    def routed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """LoRALinear's forward under model.lora_routing, without grad, with each routed adapter run on its own
        rows only (gathered by their index, its output added back at them) instead of on all rows under a mask."""
        self.weights(x.shape[0])  # checks the batch against the routes
        y = F.linear(x, self.weight, self.bias)  # (B, ..., out)
        for name, rows in self.routes.rows.items():
            adapter = self.lora[name]
            if rows is None:  # every row
                y = y + low_rank(x, adapter.A.weight, adapter.B.weight, adapter.scale)
            else:  # (b, ..., out) for this adapter's b rows
                y = y.index_add(0, rows.index, low_rank(x.index_select(0, rows.index), adapter.A.weight,
                                                        adapter.B.weight, adapter.scale))
        return y

    def as_function(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """This layer's inference forward as it stands, as a function of x alone, for model.fast_decode.bind_forward;
        None where the layer must see each batch (routed rows, several adapters, dropout)."""
        if self.routes is not None:
            return None  # the layer checks each batch against the routes' rows
        if self.merged or not self.active:
            return functools.partial(F.linear, weight=self.weight, bias=self.bias)
        one = self.single_adapter(0)
        if one is None:
            return None
        return functools.partial(one_adapter_linear, weight=self.weight, a=one[0], b=one[1], scale=one[2])


def use_fused_lora(model: nn.Module, on: bool = True) -> nn.Module:
    """Make every LoRALinear of the model a FusedLoRALinear (on) or a plain one again: the same module and state,
    the same outputs up to the order of float sums; only the class that computes them changes, so print(model)
    shows which. Layers wrapped later (by apply_lora or load_lora) start plain."""
    for _, layer in lora_layers(model):
        layer.__class__ = FusedLoRALinear if on else LoRALinear
    return model
