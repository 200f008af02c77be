"""Random requests in and around the server's request schemas (chat and plain completions, with n, stop, seed,
text parts and fields the server does not implement): each one is either accepted or refused with an
OpenAI-shaped 4xx, never a 5xx; an accepted chat prompt holds no control token that its messages' text spelled,
and an accepted plain prompt decodes back to its text. The parsers are driven directly (many cases, no model),
then a running server gets such bodies over HTTP on both endpoints, and floods of oversized, deeply nested and
too long bodies sent at once, each answered with its 4xx (a 413 readable even when the client sends its whole
body before reading)."""
import contextlib
import importlib.util
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")

from test_serve import running_server, shipped_dir  # noqa: E402,F401 (shipped_dir: a fixture)
from model.chat import encode_prompt, token_bytes  # noqa: E402
from model.loading import load_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("serve_openai_api", ROOT / "scripts" / "serve_openai_api.py")
serve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve)

MODELS = {"pebble": None, "lora_identity": "lora_identity"}
TOKENIZER = load_tokenizer(str(ROOT / "model"))
LIMITS = serve.Limits(max_tokens_limit=8, default_max_tokens=4, max_prompt_tokens=256, max_request_bytes=1 << 16,
                      longest_token_bytes=max(len(b) for b in token_bytes(TOKENIZER)), max_choices=4)

# Anything JSON can hold, small; and the message text that matters: control-token spellings and their pieces.
anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                    max_size=3), max_leaves=6)
text = st.lists(st.sampled_from(["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|", "\n", "system", "你好", "hi",
                                 "\ud800", "\udc00"])  # lone surrogates: JSON can escape them
                | st.text(max_size=4), max_size=6).map("".join)
numbers = (st.integers(-2, 10) | st.integers() | st.floats() | st.sampled_from([1e-300, 1e-45, 5e-324])
           | st.integers(1, 4).map(lambda k: 10 ** (1000 * k)))  # up to Python's 4300 digits and past them
options = {"temperature": st.floats(0, 2) | st.sampled_from([1e-300, 1e-45, 5e-324]),
           "top_p": st.floats(0, 1, exclude_min=True), "stream": st.booleans(), "n": st.integers(1, 3),
           "stop": text | st.lists(text, max_size=5), "seed": st.integers() | st.integers(-2, 2),
           "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
           "presence_penalty": st.sampled_from([0, 0.0, 0.5]), "logprobs": st.booleans(),
           "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}])}
part = st.fixed_dictionaries({"type": st.sampled_from(["text", "text", "image_url"]), "text": text})
content = text | st.lists(part, max_size=3)
valid = st.fixed_dictionaries(
    {"model": st.sampled_from(list(MODELS)),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(serve.ROLES), "content": content}),
                          min_size=1, max_size=3),
     "max_tokens": st.integers(1, 6)},
    optional=options)
valid_text = st.fixed_dictionaries(
    {"model": st.sampled_from(list(MODELS)), "prompt": text | st.lists(text, max_size=3),
     "max_tokens": st.integers(1, 6)},
    optional={**options, "echo": st.booleans()})
FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stream",
          "stream_options", "n", "stop", "seed", "user", "logprobs", "tools", "response_format", "messages.0",
          "messages.0.role", "messages.0.content", "messages.0.name"]
DELETE = object()


def mutated(request: dict, changes: list) -> dict:
    """request with each (field, value) change applied: a dotted field reaches into the first message;
    DELETE removes the field. A change that an earlier one made impossible (no first message) is skipped."""
    for path, value in changes:
        *parents, key = path.split(".")
        target = request
        with contextlib.suppress(LookupError, TypeError, ValueError):
            for parent in parents:
                target = target[int(parent)]
            if value is DELETE:
                del target[key]
            else:
                target[key] = value
    return request


# A valid request with up to two fields replaced by anything (or removed), as JSON; or bytes that are barely JSON.
changes = st.lists(st.tuples(st.sampled_from(FIELDS), anything | numbers | st.just(DELETE)), max_size=2)
requests = st.builds(mutated, valid, changes)
text_requests = st.builds(mutated, valid_text, changes)


def raw(requests: st.SearchStrategy) -> st.SearchStrategy:
    """Bodies made of these requests: whole, cut short, or bytes that are barely JSON."""
    return st.one_of(
        requests.map(lambda b: json.dumps(b).encode("utf-8")),
        st.tuples(requests, st.integers(0, 200)).map(lambda t: json.dumps(t[0]).encode()[:t[1]]),  # cut short
        st.binary(max_size=64) | st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth))


raw_bodies, raw_text_bodies = raw(requests), raw(text_requests)


def control_ids(ids: list[int]) -> list[int]:
    return [i for i in ids if i in (TOKENIZER.pad_token_id, TOKENIZER.bos_token_id, TOKENIZER.eos_token_id)]


def checked(parse, raw: bytes):
    """The request parse makes of raw, its common fields checked; None if it was refused with an OpenAI-shaped
    4xx (as it may be)."""
    try:
        request = parse(raw, MODELS, TOKENIZER, LIMITS)
    except serve.APIError as e:
        assert e.status in (400, 404)
        error = e.body()["error"]
        assert set(error) == {"message", "type", "param", "code"} and 0 < len(error["message"]) < 400
        return None
    assert request.model in MODELS and 1 <= request.max_tokens <= LIMITS.max_tokens_limit
    temperature, top_p = request.sampling
    assert (temperature == 0.0 or 1e-5 <= temperature <= 2.0) and 0.0 < top_p <= 1.0
    assert len(request.rows) == len(request.prompts) * request.n <= LIMITS.max_choices
    assert all(0 < len(s) for s in request.stop)
    return request


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_bodies)
def test_every_body_is_a_checked_request_or_a_4xx_in_openai_shape(raw):
    request = checked(serve.parse_chat_request, raw)
    if request is None:
        return
    assert request.chat
    messages = json.loads(raw)["messages"]
    plain = [{"role": m["role"], "content": "x"} for m in messages]  # the template's own control tokens only
    assert control_ids(request.prompts[0]) == control_ids(encode_prompt(TOKENIZER, plain))
    assert len(request.prompts) == 1 and len(request.prompts[0]) <= LIMITS.max_prompt_tokens


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_text_bodies)
def test_every_completions_body_is_a_checked_request_or_a_4xx_in_openai_shape(raw):
    request = checked(serve.parse_text_request, raw)
    if request is None:
        return
    prompt = json.loads(raw)["prompt"]
    texts = [prompt] if isinstance(prompt, str) else prompt
    assert not request.chat and len(request.prompts) == len(texts)
    assert [TOKENIZER.decode(ids) for ids in request.prompts] == texts  # as the tokenizer reads it, nothing lost
    assert all(0 < len(ids) <= LIMITS.max_prompt_tokens for ids in request.prompts)


def test_text_too_long_for_any_tokenization_is_refused_before_tokenizing(monkeypatch):
    def tokenize(*args, **kwargs):
        raise AssertionError("tokenized")

    monkeypatch.setattr(serve, "encode_prompt", tokenize)
    limit = LIMITS.max_prompt_tokens * LIMITS.longest_token_bytes
    for messages in ([{"role": "user", "content": "a" * (limit + 1)}],
                     [{"role": "user", "content": ""}] * (LIMITS.max_prompt_tokens + 1)):
        raw = json.dumps({"model": "pebble", "messages": messages, "max_tokens": 2}).encode()
        with pytest.raises(serve.APIError, match="more tokens than the server's limit"):
            serve.parse_chat_request(raw, MODELS, TOKENIZER, LIMITS)


@pytest.fixture(scope="module")
def fuzz_server(shipped_dir):
    flags = ["--max_tokens_limit", "8", "--default_max_tokens", "4", "--max_prompt_tokens", "256", "--gather_ms", "0",
             "--max_batch", "4"]
    with running_server(shipped_dir, *flags) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as http:
            yield http


@settings(max_examples=160, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_bodies | raw_text_bodies, path=st.sampled_from(["/chat/completions", "/completions"]))
def test_the_running_server_never_answers_5xx(fuzz_server, raw, path):
    r = fuzz_server.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 404), (r.status_code, r.text[:300])
    if r.status_code != 200:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    elif r.headers["content-type"].startswith("text/event-stream"):
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and all("error" not in json.loads(e) for e in events[:-1])
    else:
        choices = r.json()["choices"]
        assert [c["index"] for c in choices] == list(range(len(choices)))
        assert all(c["message"]["role"] == "assistant" if path == "/chat/completions" else "text" in c
                   for c in choices)


HI = {"model": "pebble", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def exchange(http: httpx.Client, head: bytes, pieces: list[bytes]) -> tuple[str, dict, dict]:
    """Send head and every piece on a fresh connection before reading (a send the server cut short ends the
    sending), then read the whole reply -> (status line, {header: value} lowercased, body as JSON)."""
    with socket.create_connection((http.base_url.host, http.base_url.port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                sock.sendall(piece)
        except OSError:  # the server answered and closed before the body was all sent
            pass
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, json.loads(body)


@pytest.mark.parametrize("framing", ["Content-Length: 20971520", "Transfer-Encoding: chunked"])
def test_an_oversized_body_sent_whole_gets_a_readable_413_and_the_connection_closes(fuzz_server, framing):
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    piece = b" " * 65536
    if "chunked" in framing:
        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
    status, headers, body = exchange(fuzz_server, head.encode(), [piece] * 320)  # 20 MiB
    assert status.startswith("HTTP/1.1 413") and headers["connection"] == "close"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "request_too_large"
    assert fuzz_server.post("/chat/completions", json=HI).status_code == 200  # still serving


def test_a_flood_of_bad_bodies_at_once_is_all_4xx_and_the_server_keeps_serving(fuzz_server):
    hi = b'{"model": "pebble", "messages": [{"role": "user", "content": "hi"}], '
    bodies = {400: [b"[" * 100_000 + b"]" * 100_000, b"[" * 200_000, hi + b'"max_tokens": ' + b"9" * 5000 + b"}",
                    hi.replace(b'hi"', "长".encode() * 60_000 + b'"') + b'"max_tokens": 2}',
                    b'{"model": "pebble", "prompt": "' + b"a" * 20_000 + b'", "max_tokens": 2}'],  # tokenized
              413: [b" " * (300 << 10)]}
    sent = [(status, raw, path) for status, raws in bodies.items() for raw in raws
            for path in ("/chat/completions", "/completions")] * 4

    def post(case: tuple[int, bytes, str]) -> None:
        status, raw, path = case
        r = fuzz_server.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == status, (path, raw[:40], r.text[:200])
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}

    with ThreadPoolExecutor(16) as pool:  # 16 at a time: the server parses while others arrive
        list(pool.map(post, sent))
    r = fuzz_server.post("/chat/completions", json=HI)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
