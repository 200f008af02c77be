"""Pebble's network and its adapters."""
from model.lora_files import load_lora, save_lora
from model.lora_routing import adapters_per_row
from model.model_lora import (LoRALinear, adapter_active, adapter_names, apply_lora, lora_disabled, merge_lora,
                              set_active_lora, unmerge_lora)
from model.model_pebble import KVCache, PebbleConfig, PebbleForCausalLM

__all__ = [
    "KVCache", "LoRALinear", "PebbleConfig", "PebbleForCausalLM", "adapter_active", "adapter_names",
    "adapters_per_row", "apply_lora", "load_lora", "lora_disabled", "merge_lora", "save_lora", "set_active_lora",
    "unmerge_lora",
]
