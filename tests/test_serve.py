"""scripts/serve_openai_api.py with the official openai client, on the shipped base and both adapters: replies,
finish reasons and token counts equal the library's generate_tokens, streams join to the plain reply, concurrent
requests across adapters are batched and each equals the same request served alone, a client that leaves frees its
row, bad requests get OpenAI-shaped 4xx errors and a full queue answers 429, while the server keeps serving."""
import contextlib
import importlib.util
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from eval_llm import load_adapter  # noqa: E402
from model.chat import encode_prompt, generate_tokens  # noqa: E402
from model.checkpoint import PebbleError, load_model  # noqa: E402

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


def ask(url: str, model: str, prompt: str, max_tokens: int = 24, **kwargs):
    return client(url).chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                               max_tokens=max_tokens, temperature=0, **kwargs)


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
        out = ask(url, name, PROMPTS[0], max_tokens=32)
        choice = out.choices[0]
        assert out.object == "chat.completion" and out.model == name
        assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
        tokenizer = worker.tokenizer
        prompt = encode_prompt(tokenizer, [{"role": "user", "content": PROMPTS[0]}])
        adapter = None if name == "pebble" else name
        new = generate_tokens(model, [prompt], 32, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id, adapters=[adapter])[0].tolist()
        ended = tokenizer.eos_token_id in new  # then the reply is the tokens up to and including eos
        assert choice.finish_reason == ("stop" if ended else "length")
        assert out.usage.prompt_tokens == len(prompt)
        assert out.usage.completion_tokens == (new.index(tokenizer.eos_token_id) + 1 if ended else 32)
        assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
        assert choice.message.content == tokenizer.decode(new, skip_special_tokens=True)
        replies[name] = choice.message.content
    assert len(set(replies.values())) == 3  # each model answers in its own way


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
                         ("stream", "yes"), ("n", 2), ("stop", ["\n"])]:
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
