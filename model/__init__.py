"""Pebble's network and its adapters."""
from model.model_pebble import KVCache, PebbleConfig, PebbleForCausalLM

__all__ = ["KVCache", "PebbleConfig", "PebbleForCausalLM"]
