"""Faster decoding, computing what the modules compute (opt-in: model/fast_paths.py switches each on where it
measured faster; bench/README.md has the figures).

- bind_forward: a model's forward as one plain callable. A call through nn.Module (hook checks, attribute
  lookups) costs a few microseconds of Python, and a decoded token makes over a hundred of them; `generate`
  binds once per call and then calls no module at all.
- hold_weights_column_major: on CPU, MKL multiplies a few rows by a weight stored (in, out) much faster than by
  one stored (out, in), and decoding makes every linear layer such a product with a few rows; training steps
  measured a little faster too.
"""
import functools
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn


def bind_forward(module: nn.Module) -> Union[Callable, nn.Module, list, dict]:
    """module's forward as a plain callable that computes the same thing without nn.Module calls.

    Each module becomes its class's forward bound to a shallow copy of the module in which every child is replaced
    by its own bound forward, and parameters and buffers are plain attributes; a ModuleList becomes a list and a
    ModuleDict a dict of bound children. A layer running nn.Linear's own forward becomes F.linear with its weight
    and bias bound (one Python call less per layer). A module may offer `as_function()` returning a plain function
    of its input (FusedLoRALinear does), or None to be kept as itself. Kept as themselves too: a module with hooks
    (or any forward hook at all in the process), and one whose instance replaces forward.

    What it requires: the forward must read its module's state through attributes, as every forward here does (its
    methods, properties and nn.Module's own methods work, since the copy is an instance of the same class). The copy
    is a snapshot: tensors changed in place are seen, attributes set anew are not, so bind again after changing the
    model (generate binds once per call).
    """
    if isinstance(module, nn.ModuleList):
        return [bind_forward(m) for m in module]
    if isinstance(module, nn.ModuleDict):
        return {name: bind_forward(m) for name, m in module.items()}
    hooked = module._forward_hooks or module._forward_pre_hooks or "forward" in vars(module)
    if hooked or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return module
    if type(module).forward is nn.Linear.forward:
        return functools.partial(F.linear, weight=module.weight, bias=module.bias)
    if hasattr(module, "as_function"):
        return module.as_function() or module
    cls = type(module)
    copy = cls.__new__(cls)  # no __init__: its state comes from the module
    copy.__dict__.update(vars(module), **module._parameters, **module._buffers)
    copy.__dict__.update((name, None if child is None else bind_forward(child))
                         for name, child in module._modules.items())
    return functools.partial(cls.forward, copy)


def hold_weights_column_major(model: nn.Module) -> nn.Module:
    """Store each linear and embedding weight (out, in) of the network as the transpose of a contiguous (in, out)
    tensor; the adapters' small A and B stay as they are (`.lora.` in their path).

    Values, shapes and state_dict keys stay as they are; only the memory layout changes, and state_dict() hands out
    contiguous copies (some savers view tensors flat). trainer.schedule.load_checkpoint gives optimizer moments
    their weight's layout again, as fused AdamW needs.
    """
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)) and ".lora." not in path and module.weight.is_contiguous():
            module.weight.data = module.weight.data.t().contiguous().t()  # a tied weight: once
    if contiguous_state_dict not in model._state_dict_hooks.values():
        model.register_state_dict_post_hook(contiguous_state_dict)
    return model


def contiguous_state_dict(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict post-hook: hand out contiguous tensors, tied ones still shared."""
    copies: dict[tuple, torch.Tensor] = {}
    for key, t in state_dict.items():
        if torch.is_tensor(t) and not isinstance(t, nn.Parameter) and not t.is_contiguous():  # keep_vars: as is
            view = (t.data_ptr(), t.dtype, t.shape, t.stride())  # tied weights are the same view
            if view not in copies:
                copies[view] = t.contiguous()
            state_dict[key] = copies[view]
