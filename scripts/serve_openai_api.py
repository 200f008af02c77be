"""An OpenAI-compatible server for a Pebble base and its adapters, batching concurrent requests, with a chat page.

    pip install -r requirements-serve.txt
    python scripts/serve_openai_api.py             # out/full_sft_256 + out/lora/*_256 on http://127.0.0.1:8998/v1
    curl http://127.0.0.1:8998/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "lora_identity", "messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 64}'

Endpoints:
- GET /v1/models lists the base (`pebble`) and the served adapters, all loaded at start onto one base: every
  adapter file of SAVE_DIR/lora/ for this hidden size (`lora_identity`, `lora_medical`), or those --lora_weight
  names. GET /v1/models/{id} describes one. GET /health says whether the worker runs and how many requests wait.
- POST /v1/chat/completions takes OpenAI's fields model, messages (content a string or a list of text parts,
  joined by newlines), max_tokens (or max_completion_tokens), temperature, top_p, n, stop, seed, stream
  (server-sent events ending in `data: [DONE]`, with stream_options.include_usage).
- POST /v1/completions takes model, prompt (a string or a list of them, tokenized as the tokenizer reads it, so
  a prompt may spell the chat template by hand) and the same options.
- GET / (and /chat) is a chat page (scripts/web/chat.html): pick a model, stream its replies, or compare the
  base and every adapter on one question side by side.
Errors come in OpenAI's shape {"error": {"message", "type", "param", "code"}}: 400 for a malformed request or a
field this server does not implement (logprobs, penalties, tools, response formats other than text, ...; such a
field passes only with a value that asks for nothing), 404 for an unknown model, 413 for a body over
--max_request_bytes (refused from its Content-Length header, before it is read).

How requests are served:
- One worker thread owns the model. It takes the oldest waiting request, waits --gather_ms for others (unless
  --max_batch rows are already waiting) and runs them as one `generate`, one row per choice (n choices of a
  prompt are n rows), each row with its own adapter (model_lora.adapters_per_row). Text goes to each row's
  client as it is made. A row ends at eos or at a stop string (finish_reason "stop"; the stop text is not
  sent) or when its own max_tokens are spent ("length"); the batch ends when every row has.
- Sampling: model_pebble.sample_next_token applies one temperature and top_p to the whole batch, so a batch
  only holds requests with equal (temperature, top_p) (all greedy requests, temperature 0, count as equal).
  It draws from torch's default generator, so a request with a seed is decoded in a batch of its own, with the
  generator seeded for that batch and restored after it: the same request with the same seed gets the same
  choices. Requests with other settings stay queued, in arrival order, for a later batch.
- At most --max_queue requests wait; one more is answered 429 at once instead of growing the queue.
- A client that leaves (mid-stream, or before its plain reply) is dropped from the queue, or its rows stop.
- Bodies are parsed and tokenized off the event loop, on two threads: one for bodies up to 32 KiB (ordinary
  chats), one for larger ones, so a flood of large requests delays only its own kind; once no large body waits,
  that thread hands glibc's freed memory back (malloc_trim). Text that cannot fit --max_prompt_tokens (more UTF-8
  bytes than that many of the longest token hold) is refused untokenized.
- After a 413 a declared body is still read to its end (and dropped) up to 1 MiB, so that a client that sends it
  all before reading gets the reply; a larger body, or a chunked one past the limit, closes the connection instead
  of being read for as long as it lasts.
- Message content is plain text even where it spells a control token (model.chat.encode_chats): a user cannot
  close their turn or open a system turn. Replies hold back the bytes of a character until it is complete, and
  text that may still begin a stop string until it cannot.
- An adapter file that cannot be loaded is reported in one warning line and left out; the rest are served (an
  adapter named by --lora_weight that cannot be loaded stops the server with one line).
- usage.completion_tokens counts the tokens generated for every choice, the eos that ended one included.
"""
import argparse
import asyncio
import collections
import contextlib
import copy
import ctypes
import gc
import json
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from model.chat import TextStream, encode_prompt, generate_tokens, sampling_settings, token_bytes
from model.common import PebbleError, repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import adapter_files, adapter_path, load_adapter, load_base, load_tokenizer, parse_names
from model.lora_files import name_from_file
from trainer.config import add_device_flags, base_model_parser
from trainer.runtime import autocast, resolve_device, resolve_dtype

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

BASE_MODEL_ID = "pebble"  # the model id that means the base without an adapter
ROLES = ("system", "user", "assistant")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The server's flags, checked."""
    p = base_model_parser(__doc__)
    p.add_argument("--lora_weight", default="all",
                   help="adapters to serve beside the base, comma-separated names as eval_llm takes them "
                        "(lora_identity,lora_medical); None serves the base alone; all: every adapter file of "
                        "SAVE_DIR/lora/ for this hidden size (default: all)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8998, help="port; 0 picks a free one (default: 8998)")
    add_device_flags(p)
    p.add_argument("--max_batch", type=int, default=16, help="most requests decoded together (default: 16)")
    p.add_argument("--max_queue", type=int, default=64,
                   help="most requests waiting for a batch; more get 429 (default: 64)")
    p.add_argument("--gather_ms", type=float, default=10.0,
                   help="how long the worker waits for more requests before starting a batch (default: 10)")
    p.add_argument("--max_tokens_limit", type=int, default=1024,
                   help="largest max_tokens a request may ask for; more is a 400 (default: 1024)")
    p.add_argument("--default_max_tokens", type=int, default=256,
                   help="max_tokens of a request that gives none (default: 256)")
    p.add_argument("--max_prompt_tokens", type=int, default=2048,
                   help="longest prompt in tokens, after the chat template; longer is a 400 (default: 2048)")
    p.add_argument("--max_request_bytes", type=int, default=1 << 18,
                   help="largest request body in bytes; larger is a 413 (default: 262144, 256 KiB)")
    p.add_argument("--log_level", default="info", help="uvicorn's log level (default: info)")
    args = p.parse_args(argv)
    for name in ("max_batch", "max_queue", "max_tokens_limit", "default_max_tokens", "max_prompt_tokens",
                 "max_request_bytes"):
        if getattr(args, name) <= 0:
            raise PebbleError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.default_max_tokens > args.max_tokens_limit:
        raise PebbleError(f"--default_max_tokens {args.default_max_tokens} is above --max_tokens_limit "
                          f"{args.max_tokens_limit}; lower it or raise the limit")
    if args.gather_ms < 0:
        raise PebbleError(f"--gather_ms must be 0 or more, got {args.gather_ms}")
    if not 0 <= args.port <= 65535:
        raise PebbleError(f"--port must be in 0..65535 (0 picks a free one), got {args.port}")
    return args


def require_server_deps() -> None:
    """Raise a one-sentence PebbleError if FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise PebbleError(f"the server needs FastAPI and uvicorn ({e.name} is missing): "
                          "pip install -r requirements-serve.txt") from e


# ---------------------------------------------------------------- requests

class APIError(Exception):
    """A request the server refuses, answered with an HTTP status and OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 kind: str = "invalid_request_error", close: bool = False):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.close = close  # answer with Connection: close (the rest of a huge body is not worth reading)

    def body(self) -> dict:
        """{"error": {...}} as OpenAI sends it."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class Limits:
    """What a request may ask for (from the command line)."""

    max_tokens_limit: int
    default_max_tokens: int
    max_prompt_tokens: int
    max_request_bytes: int = 1 << 18
    longest_token_bytes: int = 1  # the most UTF-8 bytes one token stands for: bounds text that may still fit
    max_choices: int = 16  # the most rows one request may add to a batch (prompts times n): --max_batch


@dataclass
class CompletionRequest:
    """A checked request of either endpoint, its prompts already tokenized; it asks for len(prompts) * n
    choices, choice k answering prompt k // n."""

    model: str
    adapter: Optional[str]  # None: the base alone
    prompts: list[list[int]]  # chat: the one rendered conversation; /v1/completions: one per prompt
    max_tokens: int
    temperature: float
    top_p: float
    stream: bool
    include_usage: bool
    n: int = 1
    stop: tuple[str, ...] = ()  # a choice ends before the first of these in its text
    seed: Optional[int] = None
    chat: bool = True  # False: /v1/completions (choices hold text, not messages)

    @property
    def sampling(self) -> tuple[float, float]:
        """(temperature, top_p) as generate applies them; every greedy request (temperature below
        model.chat.MIN_TEMPERATURE included) is (0, 1)."""
        return sampling_settings(self.temperature, self.top_p)

    @property
    def seeded(self) -> bool:
        """Whether this request samples from its own seed (a greedy request needs none)."""
        return self.seed is not None and self.sampling[0] > 0

    @property
    def rows(self) -> list[list[int]]:
        """The prompt of each choice, in choice order."""
        return [prompt for prompt in self.prompts for _ in range(self.n)]


def shown(value: Any) -> str:
    """repr(value) for an error message, cut short: a request may send a megabyte where a number belongs."""
    if isinstance(value, int) and abs(value) >= 10 ** 40:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (low < value if low_open else low <= value) or value > high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise APIError(400, f"{name} must be a number in {interval}, got {shown(value)}", name)
    return float(value)


def _text(value: str, name: str) -> int:
    """The UTF-8 size of a string from the request, or APIError if it holds a lone surrogate."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:  # JSON may escape half of a surrogate pair (\ud800) on its own
        raise APIError(400, f"{name} is not valid Unicode (it holds a lone surrogate)", name) from None


def _zero(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


# OpenAI request fields this server does not implement -> (whether a value asks for nothing, what does). Such a
# field is accepted only with such a value (or null); any other value, and any field named nowhere, is a 400.
NEUTRAL_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (lambda v: v is False, "false"),
    "top_logprobs": (_zero, "0"),
    "presence_penalty": (_zero, "0"),
    "frequency_penalty": (_zero, "0"),
    "logit_bias": (lambda v: v == {}, "{}"),
    "response_format": (lambda v: v == {"type": "text"}, '{"type": "text"}'),
    "tools": (lambda v: v == [], "[]"),
    "tool_choice": (lambda v: v == "none", '"none"'),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "true or false (there are no tools)"),
    "functions": (lambda v: v == [], "[]"),
    "function_call": (lambda v: v == "none", '"none"'),
    "store": (lambda v: v is False, "false"),
    "echo": (lambda v: v is False, "false"),
    "best_of": (lambda v: _is_int(v) and v == 1, "1"),
    "suffix": (lambda v: v == "", '""'),
    "user": (lambda v: isinstance(v, str), "a string"),  # only identifies the caller; changes no reply
}
COMMON_FIELDS = {"model", "max_tokens", "temperature", "top_p", "stream", "stream_options", "n", "stop", "seed"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens", "logprobs", "top_logprobs", "presence_penalty",
                               "frequency_penalty", "logit_bias", "response_format", "tools", "tool_choice",
                               "parallel_tool_calls", "functions", "function_call", "store", "user"}
TEXT_FIELDS = COMMON_FIELDS | {"prompt", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "echo",
                               "best_of", "suffix", "user"}
MAX_STOPS = 4  # as OpenAI's API
MAX_STOP_CHARS = 256  # a longer stop string is refused: each token is checked against every stop string's prefixes
SEED_RANGE = (-(1 << 63), (1 << 64) - 1)  # what torch.manual_seed takes


def _json_object(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except RecursionError:
        raise APIError(400, "the request body is not valid JSON (it nests too deeply)") from None
    except ValueError as e:  # bad JSON, bad UTF-8, or an integer of more digits than Python reads (4300)
        reason = "a number has too many digits" if "digits" in str(e) else str(e)
        raise APIError(400, f"the request body is not valid JSON ({reason})") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _refuse_unsupported(body: dict, fields: set[str]) -> None:
    """APIError naming the first field that is unknown here, or that asks for what the server does not do."""
    for name, value in body.items():
        if name not in fields:
            raise APIError(400, f"{shown(name)} is not a field this server supports; leave it out", name)
        if name in NEUTRAL_FIELDS and value is not None:
            neutral, accepted = NEUTRAL_FIELDS[name]
            if not neutral(value):
                raise APIError(400, f"{name} {shown(value)} is not supported by this server; leave it out or send "
                                    f"{accepted}", name)


def _stops(value: Any) -> tuple[str, ...]:
    """The stop strings of a request's stop field (a string or a list of them; "" and [] mean none)."""
    if value is None or value == "" or value == []:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOPS:
        raise APIError(400, f"stop must be a string or a list of up to {MAX_STOPS} strings, got {shown(value)}",
                       "stop")
    for i, s in enumerate(stops):
        name = "stop" if isinstance(value, str) else f"stop[{i}]"
        if not isinstance(s, str) or not 1 <= len(s) <= MAX_STOP_CHARS:
            raise APIError(400, f"{name} must be a string of 1 to {MAX_STOP_CHARS} characters, got {shown(s)}", name)
        _text(s, name)
    return tuple(stops)


def _options(body: dict, limits: Limits, token_key: str = "max_tokens") -> dict:
    """The generation options both endpoints share, checked -> CompletionRequest's keyword arguments."""
    max_tokens = body.get(token_key)
    if max_tokens is None:
        max_tokens = limits.default_max_tokens
    if not _is_int(max_tokens) or not 1 <= max_tokens <= limits.max_tokens_limit:
        raise APIError(400, f"{token_key} must be an integer from 1 to {limits.max_tokens_limit}, "
                            f"got {shown(max_tokens)}", token_key)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, f"stream must be true or false, got {shown(stream)}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise APIError(400, "stream_options must be an object like {\"include_usage\": true}", "stream_options")
    n = 1 if body.get("n") is None else body["n"]
    if not _is_int(n) or not 1 <= n <= limits.max_choices:
        raise APIError(400, f"n must be an integer from 1 to {limits.max_choices}, got {shown(n)}", "n")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
        raise APIError(400, f"seed must be an integer from -2**63 to 2**64-1, got {shown(seed)}", "seed")
    return dict(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True), stream=stream,
                include_usage=bool(options.get("include_usage", False)), n=n, stop=_stops(body.get("stop")),
                seed=seed)


def _model(body: dict, models: dict[str, Optional[str]]) -> str:
    model = body.get("model")
    if not isinstance(model, str):
        raise APIError(400, "model must be a string naming one of GET /v1/models", "model")
    if model not in models:
        raise model_not_found(model, models)
    return model


def model_not_found(model: str, models: dict[str, Optional[str]]) -> APIError:
    """The 404 for a model id that is not served."""
    return APIError(404, f"The model {shown(model)} does not exist; choose one of {', '.join(models)}", "model",
                    "model_not_found")


def _too_long(count: int, what: str, limits: Limits) -> APIError:
    return APIError(400, f"{what} take{'s' if count == 1 else ''} more tokens than the server's limit of "
                         f"{limits.max_prompt_tokens}; shorten {'it' if count == 1 else 'them'}")


def message_text(m: dict, i: int) -> str:
    """The text of messages[i]: its content string, or its text parts joined by newlines."""
    content = m.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise APIError(400, f"messages[{i}].content must be a string or a non-empty list of text parts",
                       f"messages[{i}].content")
    texts = []
    for j, part in enumerate(content):
        name = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise APIError(400, f"{name}.type must be \"text\" (this server reads text only), got {shown(kind)}",
                           f"{name}.type")
        if not isinstance(part.get("text"), str) or set(part) != {"type", "text"}:
            raise APIError(400, f"{name} must be {{\"type\": \"text\", \"text\": STRING}}", name)
        texts.append(part["text"])
    return "\n".join(texts)


def parse_chat_request(raw: bytes, models: dict[str, Optional[str]], tokenizer, limits: Limits) -> CompletionRequest:
    """Check a /v1/chat/completions body and tokenize its messages; APIError names what is wrong."""
    body = _json_object(raw)
    model = _model(body, models)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list of {role, content} objects", "messages")
    chat, size = [], 0  # size: bytes of text in the messages
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else None
            raise APIError(400, f"messages[{i}].role must be one of {', '.join(ROLES)}, got {shown(role)}",
                           f"messages[{i}].role")
        extra = sorted(set(m) - {"role", "content"}, key=str)
        if extra:
            raise APIError(400, f"messages[{i}].{extra[0]} is not supported by this server; leave it out",
                           f"messages[{i}].{extra[0]}")
        text = message_text(m, i)
        size += _text(text, f"messages[{i}].content")
        chat.append({"role": m["role"], "content": text})
    _refuse_unsupported(body, CHAT_FIELDS)
    token_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    options = _options(body, limits, token_key)
    # Every message takes a token or more, and every limits.longest_token_bytes bytes of text one or more: beyond
    # that the prompt cannot fit, and is refused without spending time on tokenizing it.
    if len(chat) > limits.max_prompt_tokens or size > limits.max_prompt_tokens * limits.longest_token_bytes:
        raise _too_long(2, f"the messages ({len(chat)} of them, {size} bytes of text)", limits)
    prompt = encode_prompt(tokenizer, chat)
    if len(prompt) > limits.max_prompt_tokens:
        raise _too_long(2, f"the messages ({len(prompt)} tokens)", limits)
    return CompletionRequest(model, models[model], [prompt], **options)


def parse_text_request(raw: bytes, models: dict[str, Optional[str]], tokenizer, limits: Limits) -> CompletionRequest:
    """Check a /v1/completions body and tokenize its prompt (a string or a list of them) as the tokenizer reads
    it, so that a prompt may spell the chat template's markers; APIError names what is wrong."""
    body = _json_object(raw)
    model = _model(body, models)
    prompt = body.get("prompt")
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise APIError(400, "prompt must be a non-empty string or a non-empty list of them (token ids are not "
                            "supported)", "prompt")
    _refuse_unsupported(body, TEXT_FIELDS)
    options = _options(body, limits)
    if len(texts) * options["n"] > limits.max_choices:
        raise APIError(400, f"{len(texts)} prompts with n={options['n']} ask for {len(texts) * options['n']} "
                            f"choices, more than the server's {limits.max_choices}; send fewer", "n")
    for i, text in enumerate(texts):
        if _text(text, "prompt") > limits.max_prompt_tokens * limits.longest_token_bytes:
            raise _too_long(1, f"prompt {i}", limits)
    prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(prompts):
        if len(ids) > limits.max_prompt_tokens:
            raise _too_long(1, f"prompt {i} ({len(ids)} tokens)", limits)
    return CompletionRequest(model, models[model], prompts, chat=False, **options)


# ---------------------------------------------------------------- the worker

class StopText:
    """A choice's text cut before the first of its stop strings: push returns the text that may be shown,
    holding back a tail that could still begin a stop string; `stopped` once one has appeared."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops, self.tail, self.stopped = stops, "", False

    def push(self, text: str) -> str:
        """Add text; the part of it (and of the tail held back before) that can no longer be part of a stop."""
        if self.stopped or not self.stops:
            return "" if self.stopped else text
        text = self.tail + text
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self.tail = True, ""
            return text[:min(hits)]
        # Nothing shown so far can start a stop string: the held tail is the longest suffix that begins one.
        keep = max((k for s in self.stops for k in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:k])),
                   default=0)
        self.tail = text[len(text) - keep:]
        return text[:len(text) - keep]

    def finish(self) -> str:
        """The end of the choice: the held tail, which never became a stop string."""
        tail, self.tail = self.tail, ""
        return "" if self.stopped else tail


@dataclass
class Event:
    """What the worker tells a request about one of its choices: a piece of text, the end (with its reason), or
    an error (for the whole request)."""

    kind: str  # "delta", "end" or "error"
    text: str = ""
    finish_reason: Optional[str] = None
    completion_tokens: int = 0
    index: int = 0  # the choice


@dataclass
class Job:
    """A request waiting for, or inside, a batch; events reach the request's event loop thread-safely."""

    request: CompletionRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False  # the client went away: drop it from the queue, stop its rows

    def send(self, event: Event) -> None:
        """Queue event for the request's coroutine (from any thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass

    @property
    def batch_key(self) -> Any:
        """Jobs share a batch only under equal keys: their sampling settings, except that a seeded job is
        alone (its draws would otherwise depend on the rows beside it)."""
        return ("seed", id(self)) if self.request.seeded else self.request.sampling


class _BatchDone(Exception):
    """Raised from on_token to leave generate once every row of the batch has ended."""


class BatchWorker:
    """The one thread that runs the model: takes batches of queued jobs and decodes them together."""

    def __init__(self, model, tokenizer, device: str, dtype: torch.dtype, max_batch: int, max_queue: int,
                 gather_s: float):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.max_batch, self.max_queue, self.gather_s = max_batch, max_queue, gather_s
        self.eos, self.pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.token_bytes = token_bytes(tokenizer)
        self.pending: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.recent_batches: collections.deque[tuple[int, Any]] = collections.deque(maxlen=1000)  # (rows, key)
        self.dropped = 0  # rows whose client left before they ended (dropped from the queue or the batch)
        self.thread = threading.Thread(target=self._run, name="pebble-batch-worker", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self.thread.start()

    def close(self) -> None:
        """Stop after the current batch; waiting requests get an error."""
        with self.cond:
            self.stopping = True
            left, self.pending = list(self.pending), collections.deque()
            self.cond.notify_all()
        for job in left:
            job.send(Event("error", "the server is shutting down"))
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    def waiting(self) -> int:
        """Number of requests queued for a batch."""
        with self.cond:
            return len(self.pending)

    def submit(self, job: Job) -> None:
        """Queue a job, or raise APIError 429 when --max_queue jobs already wait."""
        with self.cond:
            if self.stopping:
                raise APIError(503, "the server is shutting down", kind="server_error")
            if len(self.pending) >= self.max_queue:
                raise APIError(429, f"the server's queue is full ({self.max_queue} requests waiting); retry shortly",
                               code="rate_limit_exceeded", kind="requests")
            self.pending.append(job)
            self.cond.notify_all()

    def _take_batch(self) -> list[Job]:
        """Wait for jobs, gather for gather_s, then take, oldest first, the jobs with the oldest job's batch key
        that fit max_batch rows."""
        with self.cond:
            while not self.pending and not self.stopping:
                self.cond.wait()
            deadline = time.monotonic() + self.gather_s
            while sum(len(job.request.rows) for job in self.pending) < self.max_batch and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            live = [job for job in self.pending if not job.cancelled]
            self.dropped += sum(len(job.request.rows) for job in self.pending if job.cancelled)
            if not live:
                self.pending.clear()
                return []
            key, batch, rows = live[0].batch_key, [], 0
            for job in live:
                if job.batch_key == key and rows + len(job.request.rows) <= self.max_batch:
                    batch.append(job)
                    rows += len(job.request.rows)
            taken = {id(job) for job in batch}
            self.pending = collections.deque(job for job in live if id(job) not in taken)
            self.recent_batches.append((rows, key))  # for tests and monitoring
            return batch

    def _run(self) -> None:
        while not self.stopping:
            batch = self._take_batch()
            if not batch:
                continue
            try:
                self._decode(batch)
            except Exception as e:  # a bug must not stop the server: fail this batch, keep serving
                traceback.print_exc()
                for job in batch:
                    job.send(Event("error", f"generation failed: {type(e).__name__}: {e}"))

    @contextlib.contextmanager
    def _seeded(self, seed: Optional[int]):
        """A context in which torch's generators start from seed and are restored afterwards (None: as they are).
        model_pebble.sample_next_token draws from torch's default generator of the model's device."""
        if seed is None:
            yield
            return
        device = torch.device(self.device)
        if device.type == "cpu":
            fork = torch.random.fork_rng(devices=[])
        else:
            index = device.index if device.index is not None else torch.cuda.current_device()
            fork = torch.random.fork_rng(devices=[index], device_type=device.type)
        with fork:
            torch.manual_seed(seed)
            yield

    def _decode(self, batch: list[Job]) -> None:
        """Generate every choice of every job of the batch in one call, streaming each row's text to its job."""
        rows = [(job, index, prompt) for job in batch for index, prompt in enumerate(job.request.rows)]
        texts = [TextStream(self.token_bytes) for _ in rows]
        stops = [StopText(job.request.stop) for job, _, _ in rows]
        counts = [0] * len(rows)
        done = [False] * len(rows)

        def end(r: int, reason: str) -> None:
            job, index, _ = rows[r]
            done[r] = True
            text = stops[r].push(texts[r].finish())  # the last bytes may complete a character, and it a stop
            text += stops[r].finish()
            if text:
                job.send(Event("delta", text, index=index))
            job.send(Event("end", finish_reason="stop" if stops[r].stopped else reason,
                           completion_tokens=counts[r], index=index))

        def on_token(column: torch.Tensor) -> None:  # column (rows,): one new token per row
            for r, token in enumerate(column.tolist()):
                job, index, _ = rows[r]
                if done[r]:
                    continue
                if job.cancelled:
                    done[r] = True
                    self.dropped += 1
                    continue
                counts[r] += 1
                if token == self.eos:
                    end(r, "stop")
                    continue
                text = stops[r].push(texts[r].push(token))
                if text:
                    job.send(Event("delta", text, index=index))
                if stops[r].stopped or counts[r] >= job.request.max_tokens:
                    end(r, "length")  # "stop" when a stop string ended it
            if all(done):
                raise _BatchDone

        first = batch[0].request
        temperature, top_p = first.sampling
        try:
            with autocast(self.device, self.dtype), self._seeded(first.seed if first.seeded else None):
                generate_tokens(self.model, [prompt for _, _, prompt in rows],
                                max(job.request.max_tokens for job in batch), temperature, top_p, self.eos, self.pad,
                                adapters=[job.request.adapter for job, _, _ in rows], on_token=on_token,
                                token_table=self.token_bytes)
        except _BatchDone:
            pass
        for r in range(len(rows)):  # rows the loop left unfinished (it ran out of tokens first)
            if not done[r]:
                end(r, "length")


# ---------------------------------------------------------------- the app

WEB_PAGE = Path(__file__).resolve().parent / "web" / "chat.html"  # the chat page served at / (no build step)


def completion_id(chat: bool = True) -> str:
    """A fresh completion id (chat completions and plain completions have their own prefixes, as OpenAI's)."""
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


DRAIN_BYTES = 1 << 20  # after a 413, a declared body up to this size is still read (and dropped) by uvicorn


async def read_body(request: "Request", limit: int) -> bytes:
    """The request's body, or APIError 413 once it is known to exceed limit bytes: from its Content-Length
    header before reading anything, else (a chunked body) once the bytes read pass it.

    A declared body up to DRAIN_BYTES is still read to its end by uvicorn after the reply, so that a client that
    sends it all before reading gets the 413; past that, and for a chunked body past limit (OpenAI's clients
    always declare the length), the 413 closes the connection instead, and such a client may see it reset."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body has {declared} bytes, more than the server's limit of {limit}; "
                            "send less", code="request_too_large", close=int(declared) > DRAIN_BYTES)
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body has more than the server's limit of {limit} bytes; send less",
                           code="request_too_large", close=True)
    return b"".join(chunks)


def release_freed_memory() -> None:
    """Return the pages glibc keeps for freed blocks to the system (nothing where libc has no malloc_trim).

    Large bodies and the tokenizer's work on long words leave freed memory in glibc's heaps that it keeps, so
    after a flood of them the server's RSS stays ~10% up; a trim takes a few ms and brings it back."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


SMALL_BODY_BYTES = 32 * 1024  # bodies up to this size (ordinary chats) are parsed on a thread of their own
Parser = Callable[[bytes, dict, Any, Limits], CompletionRequest]


def create_app(worker: BatchWorker, tokenizer, models: dict[str, Optional[str]], limits: Limits) -> "FastAPI":
    """The FastAPI app; it starts the worker on startup and stops it on shutdown. Request bodies are parsed
    and tokenized on two threads, one for bodies up to SMALL_BODY_BYTES and one for larger ones, each with its
    own copy of `tokenizer` (a fast tokenizer is not shared across threads)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    lanes = [(ThreadPoolExecutor(1, thread_name_prefix=f"pebble-parse-{kind}"), copy.deepcopy(tokenizer))
             for kind in ("small", "large")]
    large_waiting = [0]  # large bodies read and not yet parsed: at 0, the large lane trims the heap
    page = WEB_PAGE.read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        for lane, _ in lanes:
            lane.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(worker.close)

    app = FastAPI(title="Pebble", lifespan=lifespan)
    app.state.models = models
    created = int(time.time())

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        headers = {"Retry-After": "1"} if e.status == 429 else {"Connection": "close"} if e.close else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, e: Exception):  # a bug: still answered in OpenAI's shape
        error = APIError(500, f"the server failed: {type(e).__name__}", kind="server_error")
        return JSONResponse(error.body(), status_code=500)

    def model_object(name: str) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "pebble"}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_object(name) for name in models]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str):
        if model_id not in models:
            raise model_not_found(model_id, models)
        return model_object(model_id)

    @app.get("/health")
    async def health():
        alive = worker.thread.is_alive() and not worker.stopping
        body = {"status": "ok" if alive else "stopped", "models": list(models), "waiting": worker.waiting()}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/", response_class=HTMLResponse)
    @app.get("/chat", response_class=HTMLResponse)
    async def chat_page():
        return page

    async def complete(request: Request, parse: Parser):
        raw = await read_body(request, limits.max_request_bytes)
        large = len(raw) > SMALL_BODY_BYTES
        lane, lane_tokenizer = lanes[large]
        loop = asyncio.get_running_loop()
        large_waiting[0] += large
        try:
            req = await loop.run_in_executor(lane, parse, raw, models, lane_tokenizer, limits)
        finally:
            del raw  # not held while the reply is generated
            large_waiting[0] -= large
            if large and not large_waiting[0]:
                with contextlib.suppress(RuntimeError):  # the lane is shut down: the server is stopping
                    lane.submit(release_freed_memory)
        job = Job(req, loop)
        worker.submit(job)
        head = {"id": completion_id(req.chat), "created": int(time.time()), "model": req.model}
        if req.stream:
            return StreamingResponse(stream_events(job, head), media_type="text/event-stream")
        # Nothing else reads the connection until the reply is sent: watch it, so that a client that leaves
        # (or times out) frees its rows at once instead of holding them to max_tokens.
        watcher = asyncio.create_task(cancel_on_disconnect(request.receive, job))
        texts: list[list[str]] = [[] for _ in req.rows]
        ends: dict[int, Event] = {}
        try:
            while len(ends) < len(texts):
                event = await job.events.get()
                if event.kind == "delta":
                    texts[event.index].append(event.text)
                elif event.kind == "error":
                    raise APIError(500, event.text, kind="server_error")
                else:
                    ends[event.index] = event
        finally:
            watcher.cancel()
            job.cancelled = True  # finished, failed or cancelled: either way its rows need not run on
        choices = [choice(req, k, "".join(texts[k]), ends[k].finish_reason) for k in range(len(texts))]
        return {**head, "object": "chat.completion" if req.chat else "text_completion", "choices": choices,
                "usage": usage_of(req, list(ends.values()))}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, parse_chat_request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, parse_text_request)

    return app


async def cancel_on_disconnect(receive: Callable[[], Awaitable[dict]], job: Job) -> None:
    """Once the ASGI receive channel reports that the client closed the connection, cancel job and wake the
    handler that waits for its events (the worker sends none to a cancelled row)."""
    while (await receive())["type"] != "http.disconnect":  # the body was read: only the disconnect comes
        pass
    job.cancelled = True
    job.events.put_nowait(Event("error", "the client closed the connection"))  # answered to no one


def choice(req: CompletionRequest, index: int, text: Optional[str], finish_reason: Optional[str] = None,
           stream: bool = False) -> dict:
    """Choice `index` of a reply in OpenAI's shape; streamed, text None is a chat's opening (the role)."""
    if not req.chat:
        body: dict = {"text": text or ""}
    elif not stream:
        body = {"message": {"role": "assistant", "content": text}}
    elif text is None:
        body = {"delta": {"role": "assistant", "content": ""}}
    else:
        body = {"delta": {"content": text} if text else {}}
    return {"index": index, **body, "logprobs": None, "finish_reason": finish_reason}


def usage_of(req: CompletionRequest, ends: list[Event]) -> dict:
    """OpenAI's usage object for a finished request: its prompts once, every choice's tokens."""
    prompt = sum(len(p) for p in req.prompts)
    completion = sum(end.completion_tokens for end in ends)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def stream_events(job: Job, head: dict) -> AsyncIterator[str]:
    """Server-sent events for one request: chunks of its choices as they are made, then `data: [DONE]`."""
    req = job.request
    kind = "chat.completion.chunk" if req.chat else "text_completion"

    def chunk(choices: list[dict], **extra: Any) -> str:
        return f"data: {json.dumps({**head, 'object': kind, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    ends: list[Event] = []
    try:
        if req.chat:
            yield chunk([choice(req, k, None, stream=True) for k in range(len(req.rows))])
        while len(ends) < len(req.rows):
            event = await job.events.get()
            if event.kind == "delta":
                yield chunk([choice(req, event.index, event.text, stream=True)])
            elif event.kind == "error":
                yield f"data: {json.dumps(APIError(500, event.text, kind='server_error').body())}\n\n"
                break
            else:
                ends.append(event)
                yield chunk([choice(req, event.index, "", event.finish_reason, stream=True)])
                if len(ends) == len(req.rows) and req.include_usage:  # OpenAI's last chunk: no choices, the usage
                    yield chunk([], usage=usage_of(req, ends))
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled = True  # finished, or the client left: either way its rows need not run on


# ---------------------------------------------------------------- start

def served_models(model, save_dir: Path, hidden_size: int,
                  names: Optional[list[str]] = None) -> dict[str, Optional[str]]:
    """Load adapters onto the model -> {model id: adapter name}, the base as BASE_MODEL_ID.

    names None: every adapter of SAVE_DIR/lora/ for this hidden size, where a file that cannot be loaded
    (corrupt, for another base, a name already taken) is left out with one warning line on stderr naming it and
    why. Otherwise exactly the named adapters (as eval_llm finds them), and any that fails stops the server."""
    models: dict[str, Optional[str]] = {BASE_MODEL_ID: None}
    paths = adapter_files(save_dir / "lora", hidden_size) if names is None else \
        [adapter_path(save_dir, name, hidden_size) for name in names]
    for path in paths:
        try:
            if name_from_file(path, hidden_size) in models:
                raise PebbleError(f"{path}: the adapter's name is taken (by the base or another file); "
                                  "rename the file")
            name = load_adapter(model, path)
        except (PebbleError, OSError) as e:
            if names is not None:
                raise
            print(f"warning: not serving {path}: {e}", file=sys.stderr, flush=True)
            continue
        models[name] = name
    return models



def build_app(args: argparse.Namespace) -> tuple["FastAPI", BatchWorker]:
    """Load the base, its adapters and the tokenizer as the flags say -> (FastAPI app, worker)."""
    require_server_deps()
    device = resolve_device(args.device)  # one clear line for a device this PyTorch cannot use
    tokenizer = load_tokenizer(args.tokenizer_path)
    save_dir = repo_path(args.save_dir)
    model, _ = load_base(save_dir, args.weight, args.hidden_size, 0, tokenizer, device)
    names = None if args.lora_weight.strip().lower() == "all" else parse_names(args.lora_weight)
    models = served_models(model, save_dir, args.hidden_size, names)
    enable_fast_paths(model)
    # The worker decodes with its own tokenizer: the fast tokenizer is not meant to be shared across threads.
    worker = BatchWorker(model, load_tokenizer(args.tokenizer_path), device, resolve_dtype(args.dtype, device),
                         args.max_batch, args.max_queue, args.gather_ms / 1000)
    limits = Limits(args.max_tokens_limit, args.default_max_tokens, args.max_prompt_tokens, args.max_request_bytes,
                    max(len(b) for b in worker.token_bytes), args.max_batch)
    return create_app(worker, tokenizer, models, limits), worker


def main(argv: Optional[list[str]] = None) -> None:
    """Parse the flags, load everything, listen and serve until interrupted."""
    args = parse_args(argv)
    app, _ = build_app(args)
    import uvicorn  # present: build_app checked
    # torch, transformers and FastAPI leave ~400k objects that live as long as the server. A full collection walks
    # them all (~0.3 s with the GIL held, so every request stalls), and requests that allocate many containers (a
    # deeply nested body makes ~1000 lists before json gives up) trigger one every few dozen. Frozen, they are never
    # walked again: collections only see what requests make.
    gc.collect()
    gc.freeze()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise PebbleError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); pick another --port") from e
    port = sock.getsockname()[1]
    print(f"serving {', '.join(app.state.models)} at http://{args.host}:{port}/v1 (batches of up to {args.max_batch}, "
          f"queue {args.max_queue})", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level=args.log_level)).run(sockets=[sock])


if __name__ == "__main__":
    run_cli(main)
