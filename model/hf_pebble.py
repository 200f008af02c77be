"""Pebble as a transformers model: save_pretrained / from_pretrained, and the class a remote-code folder names.

model_pebble.py is plain torch, so that training and chatting do not import transformers' model machinery at
every start. This module gives the same network transformers' base classes:

    model = PebbleForCausalLM.from_plain(plain_model)   # same modules, same weights (shared, not copied)
    model.save_pretrained("folder"); PebbleForCausalLM.from_pretrained("folder")

scripts/convert_model.py hf --remote_code copies this file and model_pebble.py into the folder it writes.
"""
import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .model_pebble import PebbleConfig as PlainConfig, PebbleForCausalLM as PlainModel


class PebbleConfig(PretrainedConfig):
    """model_pebble.PebbleConfig's fields (checked the same way) on transformers' config class."""

    model_type = "pebble"

    def __init__(self, **kwargs):
        fields = PlainConfig.from_dict(kwargs).to_dict()  # defaults filled in, shapes checked
        tied = {k: fields.pop(k) for k in ("tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")}
        self.__dict__.update(fields)
        super().__init__(**tied, **{k: v for k, v in kwargs.items() if k not in fields and k not in tied})

    def plain(self) -> PlainConfig:
        return PlainConfig.from_dict(self.to_dict())


class PebbleForCausalLM(PreTrainedModel, GenerationMixin):
    """model_pebble.PebbleForCausalLM's modules, forward and generate on transformers' PreTrainedModel.

    GenerationMixin is inherited for the hooks that wrappers such as PEFT's PeftModelForCausalLM read
    (prepare_inputs_for_generation); `generate` itself is ours."""

    config_class = PebbleConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: PebbleConfig):
        super().__init__(config)
        plain = PlainModel(config.plain())
        self.model, self.lm_head = plain.model, plain.lm_head
        self.bind_decode = None
        self.post_init()

    @classmethod
    def from_plain(cls, plain: PlainModel) -> "PebbleForCausalLM":
        """A transformers model holding plain's own modules (its weights, adapters included)."""
        with torch.device("meta"):  # the modules are replaced at once: build them without memory
            model = cls(PebbleConfig(**plain.config.to_dict()))
        model.model, model.lm_head = plain.model, plain.lm_head
        return model

    _init_weights = PlainModel._init_weights
    generate = PlainModel.generate

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, *args, **kwargs) -> CausalLMOutputWithPast:
        out = PlainModel.forward(self, *args, **kwargs)
        # positional: the cache field is `past_key_values` in transformers 4 and `cache` in 5
        return CausalLMOutputWithPast(out.loss, out.logits, out.past_key_values)
