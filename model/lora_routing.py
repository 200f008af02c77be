"""Mixed-adapter batches: requests for different adapters decoded as one batch (the server's batches, and
model.chat.generate_tokens with one adapter per prompt).

Inside `adapters_per_row(model, names)` row i of every batch is answered by adapter names[i] (None: the base
alone), whatever adapters are active. Each layer gets `routes`: for each adapter with rows there, its Rows (None
where it has every row), and the batch size. LoRALinear's one forward takes the rows' mask as that adapter's weight: the base product
runs once for the whole batch, each routed adapter over the whole batch too, and the mask keeps its output to its
own rows. FusedLoRALinear (model/fast_lora.py) runs each adapter on its own rows only, by their index.
"""
import contextlib
from typing import Iterator, NamedTuple, Optional, Union

import torch
from torch import nn

from model.common import PebbleError
from model.model_lora import check_loaded, lora_layers

MERGED = "adapters are merged into the weights; call unmerge_lora(model) before routing adapters per row"


class Rows(NamedTuple):
    """The rows of a batch that one adapter answers."""

    mask: torch.Tensor  # (B, 1, 1) bool: the adapter's weight in each row, 1 or 0
    index: torch.Tensor  # (b,) long: the same rows, as indices


class Routes(NamedTuple):
    """What one layer knows while a batch is routed: each adapter with rows there and its Rows (None: every row)."""

    rows: dict[str, Optional[Rows]]
    size: int  # the batch size the routes were made for

    def weights(self, batch_rows: int, merged: bool) -> dict[str, Union[float, torch.Tensor]]:
        """Each routed adapter with its weight in LoRALinear's forward: 1.0, or the 0/1 mask of its rows."""
        if merged:
            raise PebbleError(MERGED)
        if batch_rows != self.size:
            raise PebbleError(f"adapters_per_row was given {self.size} adapter names but the batch has "
                              f"{batch_rows} rows; give one name (or None) per row")
        return {name: 1.0 if owned is None else owned.mask for name, owned in self.rows.items()}

    def __str__(self) -> str:
        rows = {n: "all" if r is None else ",".join(map(str, r.index.tolist())) for n, r in self.rows.items()}
        return f"per_row=[{' | '.join(f'{n}: {r}' for n, r in rows.items()) or 'none'}] of {self.size} rows"


@contextlib.contextmanager
def adapters_per_row(model: nn.Module, names: list[Optional[str]]) -> Iterator[nn.Module]:
    """Run the block with row i of every batch answered by adapter names[i] (None: the base alone).

    Every forward inside the block must have len(names) rows, which holds through `generate` (KV cache and left
    padding keep the rows in place). A row gets what it gets alone with its adapter active, up to the rounding of
    products over another batch size; one adapter for every row computes exactly as the active adapter does.
    Routing lives in the layers: one thread at a time may run a model with it.
    """
    if not names:
        raise PebbleError("adapters_per_row needs one adapter name (or None) per row; got an empty list")
    check_loaded(model, names)
    layers = list(lora_layers(model))
    if any(layer.merged for _, layer in layers):
        raise PebbleError(MERGED)
    owned: dict[str, list[int]] = {}  # adapter -> its rows, in first-seen order
    for row, name in enumerate(names):
        if name is not None:
            owned.setdefault(name, []).append(row)
    made: dict[tuple[torch.device, str], Rows] = {}  # one Rows per device and adapter

    def rows(name: str, device: torch.device) -> Optional[Rows]:
        if len(owned[name]) == len(names):
            return None  # every row: the adapter's plain weight 1.0
        if (device, name) not in made:
            index = torch.tensor(owned[name], dtype=torch.long, device=device)
            mask = torch.zeros(len(names), 1, 1, dtype=torch.bool, device=device).index_fill_(0, index, True)
            made[device, name] = Rows(mask, index)
        return made[device, name]

    saved = {path: layer.routes for path, layer in layers}
    try:
        for _, layer in layers:
            layer.routes = Routes({n: rows(n, layer.weight.device) for n in owned if n in layer.lora}, len(names))
        yield model
    finally:
        for path, layer in layers:
            layer.routes = saved[path]
