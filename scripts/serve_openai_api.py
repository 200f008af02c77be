"""An OpenAI-compatible chat server for a Pebble base and every adapter beside it, batching concurrent requests.

    pip install -r requirements-serve.txt
    python scripts/serve_openai_api.py             # out/full_sft_256 + out/lora/*_256 on http://127.0.0.1:8998/v1
    curl http://127.0.0.1:8998/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "lora_identity", "messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 64}'

Endpoints: GET /v1/models lists the base (`pebble`) and each adapter file of SAVE_DIR/lora/ for this hidden size
(`lora_identity`, `lora_medical`), all loaded at start onto one base; POST /v1/chat/completions takes OpenAI's
fields model, messages, max_tokens (or max_completion_tokens), temperature, top_p, stream (server-sent events
ending in `data: [DONE]`, with stream_options.include_usage) and n (only 1). Errors come in OpenAI's shape
{"error": {"message", "type", "param", "code"}}: 400 for a malformed request, 404 for an unknown model, 413 for a
body over --max_request_bytes (refused from its Content-Length header, before it is read).

How requests are served:
- One worker thread owns the model. It takes the oldest waiting request, waits --gather_ms for others (unless
  --max_batch are already waiting) and runs them as one `generate`, each row with its own adapter
  (model_lora.adapters_per_row). Tokens go to each row's client as they are made. A row ends at eos
  (finish_reason "stop") or when its own max_tokens are spent ("length"); the batch ends when every row has.
- Sampling: model_pebble.sample_next_token applies one temperature and top_p to the whole batch, so a batch
  only holds requests with equal (temperature, top_p) (all greedy requests, temperature 0, count as equal).
  Requests with other settings stay queued, in arrival order, for a later batch.
- At most --max_queue requests wait; one more is answered 429 at once instead of growing the queue.
- A client that leaves (mid-stream, or before its plain reply) is dropped from the queue, or its row stops.
- Bodies are parsed and tokenized off the event loop, on two threads: one for bodies up to 32 KiB (ordinary
  chats), one for larger ones, so a flood of large requests delays only its own kind. Text that cannot fit
  --max_prompt_tokens (more UTF-8 bytes than that many of the longest token hold) is refused untokenized.
- Message content is plain text even where it spells a control token (model.chat.encode_chats): a user cannot
  close their turn or open a system turn. Replies hold back the bytes of a character until it is complete.
- An adapter file that cannot be loaded is reported in one warning line and left out; the rest are served.
- usage.completion_tokens counts the tokens generated for the row, the eos that ended it included.
"""
import argparse
import asyncio
import collections
import contextlib
import copy
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

from eval_llm import adapter_files, load_adapter, load_base
from model.chat import TextStream, encode_prompt, generate_tokens, sampling_settings, token_bytes
from model.checkpoint import PebbleError, repo_path
from trainer.trainer_utils import autocast, base_model_parser, load_tokenizer, resolve_dtype, run_cli

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

BASE_MODEL_ID = "pebble"  # the model id that means the base without an adapter
ROLES = ("system", "user", "assistant")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The server's flags, checked."""
    p = base_model_parser(__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8998, help="port; 0 picks a free one (default: 8998)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="autocast dtype; auto uses bf16 where it measures faster than fp32 (default: auto)")
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
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

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


@dataclass
class ChatRequest:
    """A checked chat completion request, its prompt already tokenized."""

    model: str
    adapter: Optional[str]  # None: the base alone
    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stream: bool
    include_usage: bool

    @property
    def sampling(self) -> tuple[float, float]:
        """(temperature, top_p) as generate applies them; every greedy request (temperature below
        model.chat.MIN_TEMPERATURE included) is (0, 1)."""
        return sampling_settings(self.temperature, self.top_p)


def shown(value: Any) -> str:
    """repr(value) for an error message, cut short: a request may send a megabyte where a number belongs."""
    if isinstance(value, int) and abs(value) >= 10 ** 40:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (low < value if low_open else low <= value) or value > high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise APIError(400, f"{name} must be a number in {interval}, got {shown(value)}", name)
    return float(value)


def parse_chat_request(raw: bytes, models: dict[str, Optional[str]], tokenizer, limits: Limits) -> ChatRequest:
    """Check a /v1/chat/completions body and tokenize its messages; APIError names what is wrong."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise APIError(400, "the request body is not valid JSON (it nests too deeply)") from None
    except ValueError as e:  # bad JSON, bad UTF-8, or an integer of more digits than Python reads (4300)
        reason = "a number has too many digits" if "digits" in str(e) else str(e)
        raise APIError(400, f"the request body is not valid JSON ({reason})") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise APIError(400, "model must be a string naming one of GET /v1/models", "model")
    if model not in models:
        raise APIError(404, f"The model {shown(model)} does not exist; choose one of {', '.join(models)}", "model",
                       "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list of {role, content} objects", "messages")
    size = 0  # bytes of text in the messages
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else None
            raise APIError(400, f"messages[{i}].role must be one of {', '.join(ROLES)}, got {shown(role)}",
                           f"messages[{i}].role")
        if not isinstance(m.get("content"), str):
            raise APIError(400, f"messages[{i}].content must be a string", f"messages[{i}].content")
        try:
            size += len(m["content"].encode("utf-8"))
        except UnicodeEncodeError:  # JSON may escape half of a surrogate pair (\ud800) on its own
            raise APIError(400, f"messages[{i}].content is not valid Unicode (it holds a lone surrogate)",
                           f"messages[{i}].content") from None
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is None:
        max_tokens = limits.default_max_tokens
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) \
            or not 1 <= max_tokens <= limits.max_tokens_limit:
        raise APIError(400, f"{key} must be an integer from 1 to {limits.max_tokens_limit}, got {shown(max_tokens)}",
                       key)
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, low_open=True)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, f"stream must be true or false, got {shown(stream)}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "stream_options must be an object", "stream_options")
    if body.get("n") not in (None, 1):
        raise APIError(400, f"n must be 1 (one choice per request), got {shown(body.get('n'))}", "n")
    if body.get("stop") not in (None, [], ""):
        raise APIError(400, "stop sequences are not supported; leave out stop", "stop")
    # Every message takes a token or more, and every limits.longest_token_bytes bytes of text one or more: beyond
    # that the prompt cannot fit, and is refused without spending time on tokenizing it.
    if len(messages) > limits.max_prompt_tokens or size > limits.max_prompt_tokens * limits.longest_token_bytes:
        raise APIError(400, f"the messages ({len(messages)} of them, {size} bytes of text) take more tokens than "
                            f"the server's limit of {limits.max_prompt_tokens}; shorten them", "messages")
    prompt = encode_prompt(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages])
    if len(prompt) > limits.max_prompt_tokens:
        raise APIError(400, f"the messages take {len(prompt)} tokens, more than the server's limit of "
                            f"{limits.max_prompt_tokens}; shorten them", "messages")
    return ChatRequest(model, models[model], prompt, max_tokens, temperature, top_p, stream,
                       bool(options.get("include_usage", False)))


# ---------------------------------------------------------------- the worker

@dataclass
class Event:
    """What the worker tells a request: a piece of text, the end (with its reason), or an error."""

    kind: str  # "delta", "end" or "error"
    text: str = ""
    finish_reason: Optional[str] = None
    completion_tokens: int = 0


@dataclass
class Job:
    """A request waiting for, or inside, a batch; events reach the request's event loop thread-safely."""

    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False  # the client went away: drop it from the queue, stop its row

    def send(self, event: Event) -> None:
        """Queue event for the request's coroutine (from any thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass


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
        self.recent_batches: collections.deque[tuple[int, tuple[float, float]]] = collections.deque(maxlen=1000)
        self.dropped = 0  # requests whose client left before they ended (dropped from the queue or the batch)
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
        """Wait for jobs, gather for gather_s, then take up to max_batch with the oldest job's sampling."""
        with self.cond:
            while not self.pending and not self.stopping:
                self.cond.wait()
            deadline = time.monotonic() + self.gather_s
            while len(self.pending) < self.max_batch and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            live = [job for job in self.pending if not job.cancelled]
            self.dropped += len(self.pending) - len(live)
            if not live:
                self.pending.clear()
                return []
            key = live[0].request.sampling
            batch = [job for job in live if job.request.sampling == key][:self.max_batch]
            taken = {id(job) for job in batch}
            self.pending = collections.deque(job for job in live if id(job) not in taken)
            self.recent_batches.append((len(batch), key))  # (size, sampling): for tests and monitoring
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

    def _decode(self, batch: list[Job]) -> None:
        """Generate for every job of the batch in one call, streaming each row's text to its job."""
        requests = [job.request for job in batch]
        texts = [TextStream(self.token_bytes) for _ in batch]
        counts = [0] * len(batch)
        done = [False] * len(batch)

        def end(i: int, reason: str) -> None:
            done[i] = True
            tail = texts[i].finish()
            if tail:
                batch[i].send(Event("delta", tail))
            batch[i].send(Event("end", finish_reason=reason, completion_tokens=counts[i]))

        def on_token(column: torch.Tensor) -> None:  # column (B,): one new token per row
            for i, token in enumerate(column.tolist()):
                if done[i]:
                    continue
                if batch[i].cancelled:
                    done[i] = True
                    self.dropped += 1
                    continue
                counts[i] += 1
                if token == self.eos:
                    end(i, "stop")
                    continue
                delta = texts[i].push(token)
                if delta:
                    batch[i].send(Event("delta", delta))
                if counts[i] >= requests[i].max_tokens:
                    end(i, "length")
            if all(done):
                raise _BatchDone

        temperature, top_p = requests[0].sampling
        try:
            with autocast(self.device, self.dtype):
                generate_tokens(self.model, [r.prompt for r in requests], max(r.max_tokens for r in requests),
                                temperature, top_p, self.eos, self.pad, adapters=[r.adapter for r in requests],
                                on_token=on_token)
        except _BatchDone:
            pass
        for i in range(len(batch)):  # rows the loop left unfinished (it ran out of tokens first)
            if not done[i]:
                end(i, "length")


# ---------------------------------------------------------------- the app

def completion_id() -> str:
    """A fresh chat completion id."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


async def read_body(request: "Request", limit: int) -> bytes:
    """The request's body, or APIError 413 once it is known to exceed limit bytes: from its Content-Length
    header before reading anything, else as soon as the bytes read pass it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body has {declared} bytes, more than the server's limit of {limit}; "
                            "send less", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body has more than the server's limit of {limit} bytes; send less",
                           code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


SMALL_BODY_BYTES = 32 * 1024  # bodies up to this size (ordinary chats) are parsed on a thread of their own


def create_app(worker: BatchWorker, tokenizer, models: dict[str, Optional[str]], limits: Limits) -> "FastAPI":
    """The FastAPI app; it starts the worker on startup and stops it on shutdown. Request bodies are parsed
    and tokenized on two threads, one for bodies up to SMALL_BODY_BYTES and one for larger ones, each with its
    own copy of `tokenizer` (a fast tokenizer is not shared across threads)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    lanes = [(ThreadPoolExecutor(1, thread_name_prefix=f"pebble-parse-{kind}"), copy.deepcopy(tokenizer))
             for kind in ("small", "large")]

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
        headers = {"Retry-After": "1"} if e.status == 429 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, e: Exception):  # a bug: still answered in OpenAI's shape
        error = APIError(500, f"the server failed: {type(e).__name__}", kind="server_error")
        return JSONResponse(error.body(), status_code=500)

    @app.get("/v1/models")
    async def list_models():
        data = [{"id": name, "object": "model", "created": created, "owned_by": "pebble"} for name in models]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        raw = await read_body(request, limits.max_request_bytes)
        lane, lane_tokenizer = lanes[len(raw) > SMALL_BODY_BYTES]
        req = await asyncio.get_running_loop().run_in_executor(lane, parse_chat_request, raw, models, lane_tokenizer,
                                                               limits)
        job = Job(req, asyncio.get_running_loop())
        worker.submit(job)
        head = {"id": completion_id(), "created": int(time.time()), "model": req.model}
        if req.stream:
            return StreamingResponse(stream_events(job, head), media_type="text/event-stream")
        # Nothing else reads the connection until the reply is sent: watch it, so that a client that leaves
        # (or times out) frees its row at once instead of holding it to max_tokens.
        watcher = asyncio.create_task(cancel_on_disconnect(request.receive, job))
        pieces = []
        try:
            while True:
                event = await job.events.get()
                if event.kind == "delta":
                    pieces.append(event.text)
                elif event.kind == "error":
                    raise APIError(500, event.text, kind="server_error")
                else:
                    break
        finally:
            watcher.cancel()
            job.cancelled = True  # finished, failed or cancelled: either way its row need not run on
        usage = usage_of(req, event)
        choice = {"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                  "logprobs": None, "finish_reason": event.finish_reason}
        return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}

    return app


async def cancel_on_disconnect(receive: Callable[[], Awaitable[dict]], job: Job) -> None:
    """Once the ASGI receive channel reports that the client closed the connection, cancel job and wake the
    handler that waits for its events (the worker sends none to a cancelled row)."""
    while (await receive())["type"] != "http.disconnect":  # the body was read: only the disconnect comes
        pass
    job.cancelled = True
    job.events.put_nowait(Event("error", "the client closed the connection"))  # answered to no one


def usage_of(req: ChatRequest, end: Event) -> dict:
    """OpenAI's usage object for a finished request."""
    return {"prompt_tokens": len(req.prompt), "completion_tokens": end.completion_tokens,
            "total_tokens": len(req.prompt) + end.completion_tokens}


async def stream_events(job: Job, head: dict) -> AsyncIterator[str]:
    """Server-sent events for one request: chat.completion.chunk lines, then `data: [DONE]`."""
    def chunk(delta: dict, finish_reason: Optional[str] = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        body = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            event = await job.events.get()
            if event.kind == "delta":
                yield chunk({"content": event.text})
            elif event.kind == "error":
                error = APIError(500, event.text, kind="server_error").body()
                yield f"data: {json.dumps(error)}\n\n"
                break
            else:
                yield chunk({}, event.finish_reason)
                if job.request.include_usage:  # OpenAI's last chunk: no choices, the usage
                    body = {**head, "object": "chat.completion.chunk", "choices": [],
                            "usage": usage_of(job.request, event)}
                    yield f"data: {json.dumps(body)}\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled = True  # finished, or the client left: either way its row need not run on


# ---------------------------------------------------------------- start

def served_models(model, save_dir: Path, hidden_size: int) -> dict[str, Optional[str]]:
    """Load every adapter of SAVE_DIR/lora/ for this hidden size onto the model -> {model id: adapter name}.

    A file that cannot be loaded (corrupt, for another base, a name already taken) is left out with one
    warning line on stderr naming it and why; the others are served."""
    models: dict[str, Optional[str]] = {BASE_MODEL_ID: None}
    for path in adapter_files(save_dir / "lora", hidden_size):
        try:
            if path.stem.removesuffix(f"_{hidden_size}") in models:
                raise PebbleError(f"{path}: the adapter's name is taken (by the base or another file); "
                                  "rename the file")
            name = load_adapter(model, path)
        except (PebbleError, OSError) as e:
            print(f"warning: not serving {path}: {e}", file=sys.stderr, flush=True)
            continue
        models[name] = name
    return models


def build_app(args: argparse.Namespace) -> tuple["FastAPI", BatchWorker]:
    """Load the base, its adapters and the tokenizer as the flags say -> (FastAPI app, worker)."""
    require_server_deps()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    tokenizer = load_tokenizer(args.tokenizer_path)
    save_dir = repo_path(args.save_dir)
    model, _ = load_base(save_dir, args.weight, args.hidden_size, 0, tokenizer, device)
    models = served_models(model, save_dir, args.hidden_size)
    # The worker decodes with its own tokenizer: the fast tokenizer is not meant to be shared across threads.
    worker = BatchWorker(model, load_tokenizer(args.tokenizer_path), device, resolve_dtype(args.dtype, device),
                         args.max_batch, args.max_queue, args.gather_ms / 1000)
    limits = Limits(args.max_tokens_limit, args.default_max_tokens, args.max_prompt_tokens, args.max_request_bytes,
                    max(len(b) for b in worker.token_bytes))
    return create_app(worker, tokenizer, models, limits), worker


def main(argv: Optional[list[str]] = None) -> None:
    """Parse the flags, load everything, listen and serve until interrupted."""
    args = parse_args(argv)
    app, _ = build_app(args)
    import uvicorn  # present: build_app checked
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
