"""scripts/serve_openai_api.py with the official openai client, on the shipped base and both adapters: replies,
finish reasons and token counts equal the library's generate_tokens, streams join to the plain reply, concurrent
requests across adapters are batched and each equals the same request served alone, a client that leaves frees its
row, bad requests get OpenAI-shaped 4xx errors and a full queue answers 429, while the server keeps serving.
Stop strings cut the greedy reply where they first appear; n choices share one batch; a seed repeats a sampled
reply; text parts are their joined text; /v1/completions of the chat template written out equals the chat reply;
fields the server does not implement are 400s naming them; --lora_weight picks the adapters served."""
import contextlib
import importlib.util
import json
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from model.chat import encode_prompt, generate_tokens, token_bytes  # noqa: E402
from model.checkpoint import load_model  # noqa: E402
from model.common import PebbleError  # noqa: E402
from model.loading import load_adapter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "out" / "full_sft_256.safetensors").is_file():
    pytest.skip("the shipped base out/full_sft_256.safetensors is missing", allow_module_level=True)
_spec = importlib.util.spec_from_file_location("serve_openai_api", ROOT / "scripts" / "serve_openai_api.py")
serve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve)

MODELS = ["pebble", "lora_identity", "lora_medical"]
PROMPTS = ["Who are you?", "你好，请介绍一下你自己。", "头痛应该怎么办？", "What is the capital of France?"]


@pytest.fixture(scope="module")
def shipped_dir(tmp_path_factory) -> Path:
    """A save_dir holding only the shipped base and adapters (links), whatever else the user's out/ holds."""
    folder = tmp_path_factory.mktemp("out")
    (folder / "lora").mkdir()
    (folder / "full_sft_256.safetensors").symlink_to(ROOT / "out" / "full_sft_256.safetensors")
    for name in MODELS[1:]:
        (folder / "lora" / f"{name}_256.safetensors").symlink_to(ROOT / "out" / "lora" / f"{name}_256.safetensors")
    return folder


@contextlib.contextmanager
def running_server(save_dir: Path, *flags: str):
    """The server of these flags over save_dir in a thread of this process, on a free port of 127.0.0.1
    -> (base_url, worker)."""
    args = serve.parse_args(["--dtype", "float32", "--log_level", "warning", "--port", "0",
                             "--save_dir", str(save_dir), *flags])
    app, worker = serve.build_app(args)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", worker
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def server(shipped_dir):
    with running_server(shipped_dir, "--gather_ms", "50", "--max_tokens_limit", "400") as (url, worker):
        yield url, worker


def client(url: str) -> "openai.OpenAI":
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


def ask(url: str, model: str, prompt: str, max_tokens: int = 24, temperature: float = 0, **kwargs):
    return client(url).chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                               max_tokens=max_tokens, temperature=temperature, **kwargs)


def test_models_lists_the_base_and_every_adapter(server):
    url, _ = server
    assert [m.id for m in client(url).models.list().data] == MODELS


def test_plain_completion_equals_the_library_generate_with_that_adapter(server):
    url, worker = server
    # A model of our own: the worker's is busy, or still leaving its last batch, in another thread.
    model = load_model(ROOT / "out" / "full_sft_256.safetensors").eval()
    for name in MODELS[1:]:
        load_adapter(model, ROOT / "out" / "lora" / f"{name}_256.safetensors")
    replies = {}
    for name in MODELS:
        for prompt_text in (PROMPTS[0], PROMPTS[2]):  # a question about itself, a health question
            out = ask(url, name, prompt_text, max_tokens=32)
            choice = out.choices[0]
            assert out.object == "chat.completion" and out.model == name
            assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
            tokenizer = worker.tokenizer
            prompt = encode_prompt(tokenizer, [{"role": "user", "content": prompt_text}])
            adapter = None if name == "pebble" else name
            new = generate_tokens(model, [prompt], 32, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id, adapters=[adapter])[0].tolist()
            ended = tokenizer.eos_token_id in new  # then the reply is the tokens up to and including eos
            assert choice.finish_reason == ("stop" if ended else "length")
            assert out.usage.prompt_tokens == len(prompt)
            assert out.usage.completion_tokens == (new.index(tokenizer.eos_token_id) + 1 if ended else 32)
            assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
            assert choice.message.content == tokenizer.decode(new, skip_special_tokens=True)
            replies[name, prompt_text] = choice.message.content
    # each adapter changes the answer to its own kind of question
    assert replies["lora_identity", PROMPTS[0]] != replies["pebble", PROMPTS[0]]
    assert replies["lora_medical", PROMPTS[2]] != replies["pebble", PROMPTS[2]]


def test_streamed_text_joins_to_the_plain_greedy_reply(server):
    url, _ = server
    for model, prompt in zip(MODELS, PROMPTS[1:]):
        plain = ask(url, model, prompt, max_tokens=40)
        chunks = list(ask(url, model, prompt, max_tokens=40, stream=True, stream_options={"include_usage": True}))
        assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == plain.choices[0].message.content
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
        assert chunks[-2].choices[0].finish_reason == plain.choices[0].finish_reason
        assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_concurrent_requests_across_adapters_are_batched_and_each_equals_itself_alone(server):
    url, worker = server
    jobs = [(MODELS[i % 3], PROMPTS[i % 4], 8 + 3 * i) for i in range(12)]  # each its own max_tokens
    alone = [ask(url, *job) for job in jobs]
    start = len(worker.recent_batches)
    barrier = threading.Barrier(len(jobs))

    def at_once(job):
        model, prompt, max_tokens = job
        chat = client(url).chat.completions
        barrier.wait()  # all 12 arrive within the server's 50 ms gather window (or close to it)
        return chat.create(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                           temperature=0)

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(at_once, jobs))
    for job, a, b in zip(jobs, alone, together):
        assert b.choices[0].message.content == a.choices[0].message.content, job
        assert b.choices[0].finish_reason == a.choices[0].finish_reason
        assert b.usage == a.usage and b.usage.completion_tokens <= job[2]
    sizes = [size for size, _ in list(worker.recent_batches)[start:]]
    assert sum(sizes) == len(jobs) and max(sizes) > 1  # served in shared (mixed-adapter) batches


def test_sampling_settings_split_batches(server):
    url, worker = server
    start = len(worker.recent_batches)
    jobs = [dict(temperature=0), dict(temperature=0.9, top_p=0.8), dict(temperature=0), dict(temperature=0.9)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        outs = list(pool.map(lambda kw: client(url).chat.completions.create(
            model="lora_identity", messages=[{"role": "user", "content": "hi"}], max_tokens=6, **kw), jobs))
    assert all(o.choices[0].message.content is not None for o in outs)
    batches = list(worker.recent_batches)[start:]
    assert sum(size for size, _ in batches) == 4
    # Three different settings: at least three batches, each with one setting (greedy ignores top_p).
    assert {key for _, key in batches} == {(0.0, 1.0), (0.9, 0.8), (0.9, 1.0)}


def test_a_client_that_leaves_frees_its_row_streamed_or_not(server):
    url, worker = server
    # Sampling at temperature 2 makes eos unlikely for hundreds of tokens, so the row would run on for seconds
    # if the server did not notice that its client left.
    body = {"model": "lora_medical", "messages": [{"role": "user", "content": PROMPTS[2]}], "max_tokens": 400,
            "temperature": 2.0}
    for stream in (True, False):
        before = worker.dropped
        with httpx.Client(timeout=httpx.Timeout(30, read=None if stream else 0.3)) as http:
            if stream:
                with http.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}) as r:
                    for line in r.iter_lines():  # leave after the first piece of text
                        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                            break
            else:
                with pytest.raises(httpx.ReadTimeout):  # the client gives up on the plain reply and hangs up
                    http.post(f"{url}/chat/completions", json=body)
        deadline = time.monotonic() + 10
        while worker.dropped == before:
            assert time.monotonic() < deadline, f"the row of a client that left kept running (stream={stream})"
            time.sleep(0.02)
    assert ask(url, "pebble", "hi", max_tokens=4).choices[0].message.content is not None  # still serving


def test_bad_requests_get_openai_shaped_errors_and_the_server_keeps_serving(server):
    url, _ = server
    with pytest.raises(openai.NotFoundError) as e:
        ask(url, "lora_legal", "hi")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="max_tokens must be an integer from 1 to 400"):
        ask(url, "pebble", "hi", max_tokens=10 ** 9)
    user = [{"role": "user", "content": "hi"}]
    bad = {
        b'{"model": "pebble", "messages": [': "not valid JSON",
        b'["pebble"]': "JSON object",
        b'{"messages": []}': "model must be a string",
        b'{"model": "pebble"}': "messages must be a non-empty list",
        b'{"model": "pebble", "messages": []}': "messages must be a non-empty list",
        b'{"model": "pebble", "messages": [{"role": "robot", "content": "hi"}]}': "role must be one of",
        b'{"model": "pebble", "messages": ["hi"]}': "role must be one of",
        b'{"model": "pebble", "messages": [{"role": "user", "content": 5}]}': "content must be a string",
    }
    for field, value in [("max_tokens", 0), ("max_tokens", -3), ("max_tokens", "5"), ("max_tokens", True),
                         ("max_tokens", 2.5), ("temperature", "hot"), ("temperature", 9), ("top_p", 0),
                         ("stream", "yes"), ("n", 0), ("n", 99), ("n", 1.0), ("stop", 5), ("stop", [""]),
                         ("stop", ["a"] * 5), ("seed", "7"), ("seed", 1 << 70), ("logprobs", True),
                         ("top_logprobs", 3), ("presence_penalty", 0.5), ("frequency_penalty", -1),
                         ("logit_bias", {"5": 10}), ("response_format", {"type": "json_object"}),
                         ("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "auto"),
                         ("echo", True), ("best_of", 2), ("no_such_field", 1)]:
        bad[httpx.Request("POST", url, json={"model": "pebble", "messages": user, field: value}).read()] = field
    with httpx.Client(timeout=30) as http:
        for body, message in bad.items():
            r = http.post(f"{url}/chat/completions", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, body
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and message in error["message"], body
        assert http.post(f"{url}/chat/completions", json={"model": "x", "messages": user}).status_code == 404
        assert "error" in http.get(f"{url}/no/such/path").json()
    assert ask(url, "pebble", "hi", max_tokens=4).choices[0].message.content is not None  # still serving


def test_stop_ends_a_reply_before_the_first_stop_text(server):
    url, _ = server
    for model, prompt in zip(MODELS, PROMPTS[1:]):
        full = ask(url, model, prompt, max_tokens=48)
        text = full.choices[0].message.content
        assert len(text) >= 12, text
        stop = text[8:11]  # a piece of the greedy reply: the reply with it as a stop ends where it first appears
        cut = text[:text.index(stop)]
        for stops in (stop, [stop, "never in a reply \u2603"], ["never in a reply \u2603", stop]):
            out = ask(url, model, prompt, max_tokens=48, stop=stops)
            assert out.choices[0].message.content == cut and out.choices[0].finish_reason == "stop"
            assert out.usage.completion_tokens <= full.usage.completion_tokens
            chunks = list(ask(url, model, prompt, max_tokens=48, stop=stops, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == cut
            assert chunks[-1].choices[0].finish_reason == "stop"
        absent = ask(url, model, prompt, max_tokens=48, stop="never in a reply \u2603")
        assert absent.choices[0].message.content == text  # a stop that never comes changes nothing
        assert absent.choices[0].finish_reason == full.choices[0].finish_reason


def test_n_choices_are_decoded_in_one_batch(server):
    url, worker = server
    one = ask(url, "lora_identity", PROMPTS[0], max_tokens=20)
    start = len(worker.recent_batches)
    three = ask(url, "lora_identity", PROMPTS[0], max_tokens=20, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert all(c.message.content == one.choices[0].message.content for c in three.choices)  # greedy: all alike
    assert three.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert [rows for rows, _ in list(worker.recent_batches)[start:]] == [3]
    # Sampled: the streamed choices, put back together by index, are the plain ones (same seed).
    kwargs = dict(n=4, temperature=1.0, seed=11, max_tokens=24)
    plain = ask(url, "lora_medical", PROMPTS[2], **kwargs)
    chunks = list(ask(url, "lora_medical", PROMPTS[2], stream=True, **kwargs))
    streamed = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == k)
                for k in range(4)]
    assert streamed == [c.message.content for c in plain.choices]
    assert len(set(streamed)) > 1  # four draws, not one repeated


def test_the_same_seed_gives_the_same_sampled_reply_even_among_other_requests(server):
    url, worker = server
    kwargs = dict(temperature=1.0, top_p=0.95, max_tokens=24)
    first = ask(url, "lora_identity", PROMPTS[0], seed=1234, **kwargs).choices[0].message.content
    with ThreadPoolExecutor(6) as pool:  # the same request again, amid unseeded ones with the same settings
        others = [pool.submit(ask, url, "lora_identity", PROMPTS[0], **kwargs) for _ in range(5)]
        again = pool.submit(ask, url, "lora_identity", PROMPTS[0], seed=1234, **kwargs)
        assert again.result().choices[0].message.content == first
        assert all(f.result().choices[0].finish_reason in ("stop", "length") for f in others)
    by_seed = {ask(url, "lora_identity", PROMPTS[0], seed=seed, **kwargs).choices[0].message.content
               for seed in (1, 2, 3, 4)}
    assert len(by_seed) > 1  # the seed matters
    state = torch.get_rng_state()
    with worker._seeded(99):
        torch.rand(3)
    assert torch.equal(torch.get_rng_state(), state)  # seeding one batch leaves everyone else's draws alone


def test_content_given_as_text_parts_is_their_joined_text(server):
    url, _ = server
    parts = [{"type": "text", "text": "Who are"}, {"type": "text", "text": "you?"}]
    out = client(url).chat.completions.create(model="lora_identity", messages=[{"role": "user", "content": parts}],
                                              max_tokens=24, temperature=0)
    assert out.choices[0].message.content == ask(url, "lora_identity", "Who are\nyou?").choices[0].message.content
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as e:
        client(url).chat.completions.create(model="pebble", messages=[{"role": "user", "content": [parts[0], image]}])
    assert e.value.param == "messages[0].content[1].type" and "image_url" in e.value.message


def test_unsupported_fields_are_400s_naming_the_field_and_neutral_values_pass(server):
    url, _ = server
    refused = {"logprobs": True, "presence_penalty": 0.5, "frequency_penalty": 2, "tools": [{"type": "function"}],
               "response_format": {"type": "json_object"}, "logit_bias": {"5": 1}, "modalities": ["audio"]}
    neutral = {"logprobs": False, "presence_penalty": 0, "frequency_penalty": 0.0, "tools": [], "logit_bias": {},
               "response_format": {"type": "text"}, "user": "someone"}
    for name, value in refused.items():
        with pytest.raises(openai.BadRequestError) as e:
            ask(url, "pebble", "hi", max_tokens=4, extra_body={name: value})
        assert e.value.param == name and name in e.value.message
    reply = ask(url, "pebble", PROMPTS[0], max_tokens=12).choices[0].message.content
    assert ask(url, "pebble", PROMPTS[0], max_tokens=12, extra_body=neutral).choices[0].message.content == reply
    with pytest.raises(openai.BadRequestError) as e:
        client(url).completions.create(model="pebble", prompt="hi", max_tokens=4, echo=True)
    assert e.value.param == "echo"


def test_a_model_by_id_and_health(server):
    url, _ = server
    assert client(url).models.retrieve("lora_medical").id == "lora_medical"
    with pytest.raises(openai.NotFoundError) as e:
        client(url).models.retrieve("lora_legal")
    assert e.value.code == "model_not_found"
    health = httpx.get(url.removesuffix("/v1") + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["models"] == MODELS


def test_plain_completions_of_the_rendered_template_equal_the_chat_reply(server):
    url, worker = server
    for model, prompt in zip(MODELS, PROMPTS):
        chat = ask(url, model, prompt, max_tokens=32)
        rendered = worker.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                        add_generation_prompt=True)
        out = client(url).completions.create(model=model, prompt=rendered, max_tokens=32, temperature=0)
        assert out.object == "text_completion" and out.id.startswith("cmpl-")
        assert out.choices[0].text == chat.choices[0].message.content
        assert out.choices[0].finish_reason == chat.choices[0].finish_reason and out.usage == chat.usage
        chunks = list(client(url).completions.create(model=model, prompt=rendered, max_tokens=32, temperature=0,
                                                     stream=True))
        assert "".join(c.choices[0].text for c in chunks) == out.choices[0].text
        assert chunks[-1].choices[0].finish_reason == out.choices[0].finish_reason
    # Several prompts with n choices each: choice k answers prompt k // n.
    prompts = ["The capital of France is", "1, 2, 3, 4,"]
    many = client(url).completions.create(model="pebble", prompt=prompts, n=2, max_tokens=8, temperature=0)
    alone = [client(url).completions.create(model="pebble", prompt=p, max_tokens=8, temperature=0) for p in prompts]
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert [c.text for c in many.choices] == [a.choices[0].text for a in alone for _ in range(2)]


def test_lora_weight_serves_only_the_named_adapters(shipped_dir):
    def served(*flags):
        app, _ = serve.build_app(serve.parse_args(["--save_dir", str(shipped_dir), "--device", "cpu", *flags]))
        return list(app.state.models)

    assert served() == MODELS
    assert served("--lora_weight", "lora_medical") == ["pebble", "lora_medical"]
    assert served("--lora_weight", "identity,medical") == MODELS  # the short names eval_llm takes
    assert served("--lora_weight", "None") == ["pebble"]  # MiniMind's "no adapter"
    with pytest.raises(PebbleError, match="no adapter file for 'lora_legal'"):
        served("--lora_weight", "lora_legal")


def openai_error(response: httpx.Response, status: int) -> dict:
    """The error of an OpenAI-shaped error response with this status."""
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_an_oversized_body_is_refused_413_before_it_is_read(server):
    url, _ = server
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:  # declares 20 MB, sends 1 KB of it
        t0 = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 20000000\r\n\r\n" + b" " * 1024)
        reply = b""
        while b"}}" not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        seconds = time.monotonic() - t0
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and seconds < 2  # (typically a few ms)
    assert json.loads(body)["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b" " * 65536

    with httpx.Client(timeout=30) as http:
        try:
            r = http.post(f"{url}/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
            assert openai_error(r, 413)["code"] == "request_too_large"
        except httpx.TransportError:  # the server may close before the client has sent everything
            pass
    assert ask(url, "pebble", "hi", max_tokens=4).choices[0].message.content is not None  # still serving


def test_deep_nesting_and_huge_numbers_are_400s_not_500s(server):
    url, _ = server
    hi = b'{"model": "pebble", "messages": [{"role": "user", "content": "hi"}], '
    bodies = [b"[" * 100_000, b'{"model": "pebble", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
              hi + b'"max_tokens": ' + b"9" * 5000 + b"}", hi + b'"max_tokens": ' + b"9" * 4000 + b"}",
              hi + b'"temperature": 1e999}', hi + b'"temperature": NaN}',
              b'{"model": "pebble", "messages": [{"role": "user", "content": "' + "长".encode() * 60_000 + b'"}]}']
    with httpx.Client(timeout=30) as http:
        for body in bodies:
            r = http.post(f"{url}/chat/completions", content=body, headers={"Content-Type": "application/json"})
            assert len(openai_error(r, 400)["message"]) < 300, body[:80]


def test_tiny_temperatures_answer_as_greedy_decoding_does(server):
    url, _ = server
    greedy = ask(url, "lora_identity", PROMPTS[0], max_tokens=16).choices[0].message.content
    for temperature in (1e-300, 1e-45, 5e-324):
        out = client(url).chat.completions.create(
            model="lora_identity", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=16,
            temperature=temperature)
        assert out.choices[0].message.content == greedy


def test_a_bad_adapter_file_is_reported_and_the_others_served(shipped_dir, tmp_path, capsys):
    folder = tmp_path / "out"
    shutil.copytree(shipped_dir, folder, symlinks=True)
    (folder / "lora" / "lora_broken_256.safetensors").write_bytes(b"\x00 not an adapter")
    (folder / "lora" / "pebble_256.safetensors").symlink_to(ROOT / "out" / "lora" / "lora_identity_256.safetensors")
    model = load_model(folder / "full_sft_256.safetensors").eval()
    assert list(serve.served_models(model, folder, 256)) == MODELS
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "lora_broken_256.safetensors" in warnings[0] and "pebble_256.safetensors" in warnings[1]


class ScriptedModel(torch.nn.Module):
    """Stands in for the model: `generate` emits the given token columns (the same for every row)."""

    def __init__(self, columns: list[int]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=4096)
        self.columns = columns

    def generate(self, ids, on_token, **kwargs):
        for token in self.columns:
            on_token(torch.full((ids.shape[0],), token))
        return torch.cat([ids, torch.tensor([self.columns] * ids.shape[0])], dim=1)


def test_the_worker_streams_whole_characters_and_drops_an_unfinished_tail(shipped_dir):
    tokenizer = serve.load_tokenizer(str(ROOT / "model"))
    table = token_bytes(tokenizer)
    byte_id = {t[0]: i for i, t in enumerate(table) if len(t) == 1}
    text = "石头中"
    columns = [byte_id[b] for b in text.encode("utf-8")]  # one byte per token: every character split
    for max_tokens, shown in ((len(columns), text), (len(columns) - 1, "石头")):  # whole; cut in the last one
        worker = serve.BatchWorker(ScriptedModel(columns), tokenizer, "cpu", torch.float32, 4, 4, 0.0)
        events = []  # what the worker sends, straight from its thread
        loop = SimpleNamespace(call_soon_threadsafe=lambda put, event: events.append(event))
        worker._decode([serve.Job(serve.CompletionRequest("pebble", None, [[1, 5]], max_tokens, 0.0, 1.0, True, False),
                                 loop)])
        deltas = [e.text for e in events if e.kind == "delta"]
        assert "".join(deltas) == shown and all("\ufffd" not in d for d in deltas)
        assert events[-1].kind == "end" and events[-1].completion_tokens == max_tokens


def test_a_full_queue_answers_429_at_once(shipped_dir):
    # A long gather window keeps the first requests waiting in the queue, so the third finds it full.
    with running_server(shipped_dir, "--max_queue", "2", "--gather_ms", "3000") as (url, worker):
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(ask, url, "pebble", "hi", 4) for _ in range(2)]
            deadline = time.monotonic() + 10
            while worker.waiting() < 2:
                assert time.monotonic() < deadline, "the requests never reached the queue"
                time.sleep(0.01)
            t0 = time.monotonic()
            with pytest.raises(openai.RateLimitError) as e:
                ask(url, "lora_medical", "hi", 4)
            assert time.monotonic() - t0 < 2 and e.value.code == "rate_limit_exceeded"
            assert all(f.result().choices[0].finish_reason in ("stop", "length") for f in waiting)  # still served


def test_missing_fastapi_is_one_sentence_naming_the_requirements_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    with pytest.raises(PebbleError, match=r"pip install -r requirements-serve\.txt"):
        serve.require_server_deps()


def test_the_command_line_serves_and_prints_its_address():
    import subprocess

    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve_openai_api.py"), "--port", "0",
                             "--log_level", "warning", "--dtype", "float32"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []  # "serving ..." comes once the models are loaded and the port is bound; warnings may come first
        while not lines or not lines[-1].startswith("serving"):
            lines.append(proc.stdout.readline())
            assert lines[-1] and len(lines) < 50, "".join(lines)
        line = lines[-1]
        assert "pebble, lora_identity, lora_medical" in line, line
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        deadline = time.monotonic() + 30
        while True:  # the socket is bound before uvicorn listens on it
            try:
                assert ask(url, "lora_identity", "Who are you?", 8).usage.completion_tokens <= 8
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server never answered"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
