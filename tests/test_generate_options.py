"""PebbleForCausalLM.generate and transformers' generation options: the ones it honours give what transformers'
own generate gives on the same weights (our model exported as a Qwen3ForCausalLM folder); the others are refused
by name, never ignored."""
import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from model import PebbleConfig, PebbleForCausalLM
from scripts.convert_model import export_hf

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=6400)
PROMPTS = [[5, 9, 300, 41, 1200], [77, 78]]  # the second is left-padded in a batch


def ours() -> PebbleForCausalLM:
    torch.manual_seed(0)
    return PebbleForCausalLM(PebbleConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> torch.nn.Module:
    """The same weights in transformers' own Qwen3ForCausalLM."""
    return AutoModelForCausalLM.from_pretrained(str(export_hf(ours(), tmp_path_factory.mktemp("hf") / "tiny"))).eval()


def batch() -> dict[str, torch.Tensor]:
    """PROMPTS as left-padded input_ids and attention_mask (B, T)."""
    width = max(len(p) for p in PROMPTS)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    return {"input_ids": ids, "attention_mask": mask}


def both(reference, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy output ids (B, T + new) of our generate and of transformers' on the same weights and options."""
    options = dict(max_new_tokens=12, pad_token_id=0, **options)
    with torch.no_grad():
        theirs = reference.generate(**batch(), do_sample=False, **options)
    return ours().generate(**batch(), **options), theirs


def test_repetition_penalty_matches_transformers(reference):
    plain, _ = both(reference, eos_token_id=-1)
    mine, theirs = both(reference, eos_token_id=-1, repetition_penalty=1.5)
    assert torch.equal(mine, theirs)
    assert not torch.equal(mine, plain)  # the penalty changes this model's greedy output


def test_min_new_tokens_and_a_list_of_eos_ids_match_transformers(reference):
    plain, _ = both(reference, eos_token_id=-1)
    T = batch()["input_ids"].shape[1]
    early = [int(plain[0, T + 1]), int(plain[1, T + 2])]  # tokens the rows make second and third: used as eos
    stopped, theirs = both(reference, eos_token_id=early)
    assert torch.equal(stopped, theirs) and stopped.shape[1] < plain.shape[1]
    held, theirs = both(reference, eos_token_id=early, min_new_tokens=6)
    assert torch.equal(held, theirs) and held.shape[1] > stopped.shape[1]
    assert not torch.isin(held[:, T:T + 6], torch.tensor(early)).any()


@pytest.mark.parametrize("option, value", [
    ("num_beams", 4), ("stop_strings", ["\n"]), ("return_dict_in_generate", True), ("num_return_sequences", 2),
    ("no_repeat_ngram_size", 3), ("max_length", 20), ("generation_config", GenerationConfig()), ("min_p", 0.1),
])
def test_an_option_generate_does_not_implement_is_refused_by_name(option, value):
    with pytest.raises(ValueError, match=f"does not support {option}="):
        ours().generate(**batch(), max_new_tokens=3, **{option: value})


def test_options_that_ask_for_what_generate_does_anyway_are_accepted():
    neutral = dict(num_beams=1, num_return_sequences=1, return_dict_in_generate=False, output_scores=False,
                   stop_strings=None, repetition_penalty=1.0, min_new_tokens=0)
    assert torch.equal(ours().generate(**batch(), max_new_tokens=5, **neutral),
                       ours().generate(**batch(), max_new_tokens=5))
    with pytest.raises(ValueError, match="repetition_penalty must be positive"):
        ours().generate(**batch(), max_new_tokens=3, repetition_penalty=0)
