"""Mixed-adapter batches: each row of one forward uses its own adapter (or none) and gets exactly what it gets
when run alone with that adapter active, through padding, the KV cache, autocast and generate_replies."""
import pytest
import torch

from model import (PebbleConfig, PebbleForCausalLM, adapter_active, adapters_per_row, apply_lora, merge_lora,
                   set_active_lora, unmerge_lora)
from model.chat import generate_replies, generate_tokens, left_pad
from model.common import PebbleError
from model.loading import load_tokenizer

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=97)
# Three adapters that differ in rank, scale and the layers they adapt, so no two share a layer set.
ADAPTERS = {"a": dict(rank=4, alpha=8, targets="square"),
            "b": dict(rank=2, alpha=2, targets="q_proj,v_proj,down_proj"),
            "c": dict(rank=8, alpha=4, targets="o_proj")}
ROWS = ["a", None, "b", "c", "a", "b"]  # a row of each adapter, a base row, and repeats


def model_with_adapters(**overrides) -> PebbleForCausalLM:
    """A seeded tiny model with weights large enough to give varied greedy tokens, and adapters a, b, c with
    random (non-zero) B."""
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.1)
    for name, spec in ADAPTERS.items():
        apply_lora(model, name=name, verbose=False, **spec)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for path, p in model.named_parameters():
            if ".lora." in path and ".B." in path:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    set_active_lora(model, "c")  # routing must ignore whatever is active
    return model


def prompts(count: int, vocab: int = 97) -> list[list[int]]:
    """Prompts of different lengths (3 to 3 + count - 1 tokens), so the batch is left-padded."""
    g = torch.Generator().manual_seed(7)
    return [torch.randint(3, vocab, (3 + (5 * i) % count,), generator=g).tolist() for i in range(count)]


def test_mixed_batch_logits_equal_each_row_alone():
    model = model_with_adapters()
    ps = prompts(len(ROWS))
    ids, mask = left_pad(ps, pad_id=0)
    with torch.no_grad(), adapters_per_row(model, ROWS):
        mixed = model(ids, attention_mask=mask).logits  # (B, T, V)
    for i, (name, p) in enumerate(zip(ROWS, ps)):
        with torch.no_grad(), adapter_active(model, name):
            alone = model(torch.tensor([p])).logits[0]  # (t, V), unpadded
        torch.testing.assert_close(mixed[i, -len(p):], alone, atol=1e-5, rtol=0)
    assert model.model.layers[0].self_attn.o_proj.active == {"c": 1.0}  # untouched by the routing
    assert model.model.layers[0].self_attn.o_proj.routes is None  # and the routing is gone after the block


def test_adapters_change_their_rows_only_and_a_uniform_batch_is_the_active_path():
    model = model_with_adapters()
    ids, mask = left_pad(prompts(4), pad_id=0)
    with torch.no_grad():
        with adapter_active(model, None):
            base = model(ids, attention_mask=mask).logits
        with adapter_active(model, "a"):
            all_a = model(ids, attention_mask=mask).logits
        with adapters_per_row(model, [None] * 4):
            assert torch.equal(model(ids, attention_mask=mask).logits, base)
        with adapters_per_row(model, ["a"] * 4):
            assert torch.equal(model(ids, attention_mask=mask).logits, all_a)
        with adapters_per_row(model, [None, "a", None, None]):
            out = model(ids, attention_mask=mask).logits
    assert not torch.allclose(all_a, base, atol=1e-3)  # the adapter matters, so the checks below mean something
    torch.testing.assert_close(out[[0, 2, 3]], base[[0, 2, 3]], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], all_a[1], atol=1e-5, rtol=0)


def test_greedy_mixed_generation_equals_per_adapter_generation_with_and_without_cache():
    model = model_with_adapters()
    ps = prompts(len(ROWS))
    mixed = generate_tokens(model, ps, max_new_tokens=12, eos_token_id=-1, adapters=ROWS)  # (B, 12)
    no_cache_ids, no_cache_mask = left_pad(ps, pad_id=0)
    with adapters_per_row(model, ROWS):
        no_cache = model.generate(no_cache_ids, attention_mask=no_cache_mask, max_new_tokens=12, eos_token_id=-1,
                                  use_cache=False)[:, no_cache_ids.shape[1]:]
    assert torch.equal(mixed, no_cache)
    for name in dict.fromkeys(ROWS):  # one batch per adapter, as a server without routing would run them
        rows = [i for i, n in enumerate(ROWS) if n == name]
        with adapter_active(model, name):
            grouped = generate_tokens(model, [ps[i] for i in rows], max_new_tokens=12, eos_token_id=-1)
        assert torch.equal(mixed[rows], grouped), name
    assert len({tuple(r) for r in mixed.tolist()}) > 3  # the rows really differ


def test_mixed_batch_under_bf16_autocast_matches_rows_alone():
    model = model_with_adapters()
    ps = prompts(len(ROWS))
    ids, mask = left_pad(ps, pad_id=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with adapters_per_row(model, ROWS):
            mixed = model(ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]  # (B, V)
        for i, (name, p) in enumerate(zip(ROWS, ps)):
            with adapter_active(model, name):
                alone = model(ids[i:i + 1], attention_mask=mask[i:i + 1], logits_to_keep=1).logits[0, -1]
            assert mixed.dtype == alone.dtype
            # bf16 rounds the base matmuls differently for batch shapes 6 and 1: compare at bf16 precision
            torch.testing.assert_close(mixed[i].float(), alone.float(), atol=3e-2, rtol=3e-2)


def test_unknown_name_wrong_row_count_and_merged_weights_are_errors():
    model = model_with_adapters()
    ids = torch.tensor([[5, 6, 7]] * 2)
    with pytest.raises(PebbleError, match="no adapter named 'legal'"):
        with adapters_per_row(model, ["a", "legal"]):
            pass
    assert model.model.layers[0].self_attn.q_proj.routes is None  # nothing was left half-set
    with pytest.raises(PebbleError, match="3 adapter names but the batch has 2 rows"):
        with adapters_per_row(model, ["a", None, "b"]):
            model(ids)
    assert model.model.layers[0].self_attn.q_proj.routes is None  # undone after an error inside the block
    with pytest.raises(PebbleError, match="2 adapter names for 1 prompts"):
        generate_tokens(model, [[5, 6]], max_new_tokens=2, adapters=["a", "b"])
    with pytest.raises(PebbleError, match="empty list"):
        with adapters_per_row(model, []):
            pass
    merge_lora(model)
    with pytest.raises(PebbleError, match="merged"):
        with adapters_per_row(model, ["a", "b"]):
            pass
    unmerge_lora(model)
    with adapters_per_row(model, ["a", "b"]):
        merge_lora(model)  # merging inside the block must not silently drop the routing
        with pytest.raises(PebbleError, match="merged"):
            model(ids)
        unmerge_lora(model)


def test_routing_is_visible_in_print_model():
    model = model_with_adapters()
    with adapters_per_row(model, ROWS):
        text = repr(model.model.layers[0].self_attn)
        assert "per_row=[a: 0,4 | b: 2,5] of 6 rows" in text  # q_proj: adapters a and b
        assert "per_row=[a: 0,4 | c: 3] of 6 rows" in text  # o_proj: a and c
    with adapters_per_row(model, ["b", "b"]):
        assert "per_row=[b: all] of 2 rows" in repr(model.model.layers[0].self_attn.v_proj)
    assert "active=c*1" in repr(model.model.layers[0].self_attn.o_proj)


def test_generate_replies_with_one_adapter_per_conversation():
    tokenizer = load_tokenizer("model")
    model = model_with_adapters(vocab_size=len(tokenizer))
    conversations = [[{"role": "user", "content": text}] for text in ("hello", "你好，请介绍一下你自己", "what is a stone?")]
    names = ["a", None, "b"]
    mixed = generate_replies(model, tokenizer, conversations, max_new_tokens=10, adapters=names)
    for conv, name, got in zip(conversations, names, mixed):
        with adapter_active(model, name):
            assert generate_replies(model, tokenizer, [conv], max_new_tokens=10) == [got]
