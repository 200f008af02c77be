"""The server under floods of bad requests: how fast they are refused and what they cost everyone else.

    python bench/serve_flood.py                 # the shipped base, every case, 3 rounds each
    python bench/serve_flood.py --rounds 1      # a quick look

Starts scripts/serve_openai_api.py (the base alone, its other flags at their defaults) as a subprocess on a free
port. A second process keeps a steady stream of small chat requests going (--streams clients in a loop, max_tokens 8,
greedy) and records each one's latency. First the stream runs alone (--idle_s) for its idle p99; then, for each case,
100 bad requests are sent at once over raw sockets while the stream goes on, --rounds times. Per case the table
gives: the time from the flood's start until every bad request was answered (median over rounds), their status
codes (`reset`: the connection was reset or closed before a whole reply came), the p99 latency of the stream's
requests that overlapped a flood, as a multiple of the idle p99, and the server's VmRSS before the case and after it
(a second after its last round). Each case is also sent, as many rounds, to a bare asyncio server in a process of its
own (`bare_reply`: no framework, it reads only what the verdict needs, answers and closes) while the stream keeps
the real server's worker busy: the least time this client and this host need for the case, whatever the server.
No asserts: the targets are 413/400 within 100 ms, others' p99 within 2x of idle, RSS back within 10% of where it
started, and no 5xx.
"""
import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOD = 100  # bad requests per case, all sent at once
LIMIT = 1 << 18  # the server's default --max_request_bytes
BIG = 20 << 20  # bytes of the oversized bodies (20 MiB), sent in 64 KiB pieces
HI = b'{"model": "pebble", "messages": [{"role": "user", "content": "hi"}], '


def head(length: int = None, chunked: bool = False, path: str = "/v1/chat/completions") -> bytes:
    """A POST's request line and headers, with Content-Length, chunked transfer coding, or neither."""
    framing = "Transfer-Encoding: chunked\r\n" if chunked else "" if length is None else f"Content-Length: {length}\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n".encode()


def body(raw: bytes, path: str = "/v1/chat/completions") -> list[bytes]:
    return [head(len(raw), path=path), raw]


def chunked() -> list[bytes]:
    piece = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
    return [head(chunked=True)] + [piece] * (BIG >> 16) + [b"0\r\n\r\n"]


# name -> (what each of the 100 connections writes, as a list of pieces)
CASES = {
    "20 MB, Content-Length, 64 KB sent": lambda: [head(BIG), b" " * (1 << 16)],
    "20 MB, Content-Length, all sent at once": lambda: [head(BIG)] + [b" " * (1 << 16)] * (BIG >> 16),
    "20 MB chunked (no Content-Length)": chunked,
    "20 MB sent at once, no Content-Length nor chunked": lambda: [head()] + [b" " * (1 << 16)] * (BIG >> 16),
    "5000-digit integer": lambda: body(HI + b'"max_tokens": ' + b"9" * 5000 + b"}"),
    "180 KB message": lambda: body(b'{"model": "pebble", "messages": [{"role": "user", "content": "'
                                   + "长".encode() * 60_000 + b'"}]}'),
    "100k-deep nested JSON (200 KB)": lambda: body(b"[" * 100_000 + b"]" * 100_000),
    "170 KB one-word prompt (tokenized)": lambda: body(json.dumps({"model": "pebble", "prompt": "a" * 170_000,
                                                                   "max_tokens": 8}).encode(), "/v1/completions"),
}


async def one_bad(port: int, pieces: list[bytes], t0: float) -> tuple[str, float]:
    """Send pieces on a fresh connection while reading the reply -> (status code or 'reset', seconds since t0).
    A failed send stops sending but not reading (as httpx does): the server may answer and close before the
    whole body is sent."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)

    async def send():
        with contextlib.suppress(OSError):
            for piece in pieces:
                await loop.sock_sendall(sock, piece)

    sender = None
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        sender = asyncio.create_task(send())
        reply = b""
        while not whole(reply):
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            reply += chunk
        return (reply.split(b" ", 2)[1].decode() if whole(reply) else "reset"), time.monotonic() - t0
    except OSError:
        return "reset", time.monotonic() - t0
    finally:
        if sender:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        sock.close()


def whole(reply: bytes) -> bool:
    """Whether reply holds a whole HTTP response (its headers and Content-Length bytes of body)."""
    headers, found, rest = reply.partition(b"\r\n\r\n")
    length = 0
    for line in headers.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return bool(found) and len(rest) >= length


async def flood(port: int, pieces: list[bytes]) -> tuple[float, float, list[tuple[str, float]]]:
    t0 = time.monotonic()
    answers = await asyncio.gather(*(one_bad(port, pieces, t0) for _ in range(FLOOD)))
    return t0, time.monotonic(), answers


async def bare_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The least a server can do with one of the flood's requests: read the head and only as much of the body as
    the verdict needs (nothing past a Content-Length over LIMIT, a chunked body until it passes LIMIT), answer 413
    or 400, and close."""
    status = 400
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))}
        length = int(fields.get(b"content-length", b"0"))
        if length > LIMIT:
            status = 413
        elif fields.get(b"transfer-encoding") == b"chunked":
            read = 0
            while read <= LIMIT and (data := await reader.read(1 << 16)):
                read += len(data)
            status = 413 if read > LIMIT else 400
        else:
            await reader.readexactly(length)
        reply = b'{"error": {"message": "refused"}}'
        writer.write(b"HTTP/1.1 %d Refused\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (status, len(reply), reply))
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def bare_server(out) -> None:
    """In its own process: serve bare_reply on a free port, sent back through out."""
    async def run():
        server = await asyncio.start_server(bare_reply, "127.0.0.1", 0, backlog=FLOOD * 2)
        out.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(run())


def stream(url: str, clients: int, stop, out) -> None:
    """In its own process: `clients` loops of small greedy chats until stop is set; sends (start, seconds, status)."""
    async def loop(http, done):
        while not stop.is_set():
            t = time.monotonic()
            r = await http.post("/chat/completions", json={"model": "pebble", "max_tokens": 8, "temperature": 0,
                                                           "messages": [{"role": "user", "content": "Who are you?"}]})
            done.append((t, time.monotonic() - t, r.status_code))

    async def run():
        done = []
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await asyncio.gather(*(loop(http, done) for _ in range(clients)))
        return done

    out.send(asyncio.run(run()))


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def start_server(script: str) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([sys.executable, script, "--port", "0",
                             "--lora_weight", "None", "--log_level", "warning"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = ""
    while not line.startswith("serving"):
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"the server did not start (exit code {proc.wait()})")
    url = line.split(" at ")[1].split()[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    for _ in range(300):  # the socket is bound before uvicorn listens on it
        try:
            httpx.get(url.removesuffix("/v1") + "/health", timeout=5)
            return proc, url, port
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the server never answered")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="floods per case (default: 3)")
    p.add_argument("--streams", type=int, default=2, help="clients in the normal stream (default: 2)")
    p.add_argument("--idle_s", type=float, default=10, help="seconds of the stream alone, for its p99 (default: 10)")
    p.add_argument("--server", default=os.path.join(ROOT, "scripts", "serve_openai_api.py"),
                   help="the server script, e.g. an older copy to compare (default: scripts/serve_openai_api.py)")
    args = p.parse_args()
    print(f"load average at start: {open('/proc/loadavg').read().strip()}")
    proc, url, port = start_server(args.server)
    stop, (receive, send) = multiprocessing.Event(), multiprocessing.Pipe(duplex=False)
    streamer = multiprocessing.Process(target=stream, args=(url, args.streams, stop, send))
    port_in, port_out = multiprocessing.Pipe(duplex=False)
    bare = multiprocessing.Process(target=bare_server, args=(port_out,), daemon=True)
    try:
        bare.start()
        bare_port = port_in.recv()
        streamer.start()
        time.sleep(2)  # warm-up, not counted
        idle = (time.monotonic(), time.monotonic() + args.idle_s)
        time.sleep(args.idle_s)
        rss0 = rss_mb(proc.pid)
        windows, results = collections.defaultdict(list), {}
        for name, make in CASES.items():
            pieces, before = make(), rss_mb(proc.pid)
            runs, floor = [], []
            for _ in range(args.rounds):
                t0, t1, answers = asyncio.run(flood(port, pieces))
                windows[name].append((t0, t1))
                runs.append(answers)
                time.sleep(1)
            after = rss_mb(proc.pid)
            for _ in range(args.rounds):  # the same flood to the bare server, the stream still running
                floor.append(asyncio.run(flood(bare_port, pieces))[2])
                time.sleep(1)
            results[name] = (runs, floor, before, after)
        stop.set()
        done = receive.recv()
        streamer.join()
    finally:
        bare.terminate()
        proc.terminate()
        proc.wait(timeout=30)
    idle_p99 = p99([s for t, s, _ in done if idle[0] <= t and t + s <= idle[1]])
    errors = collections.Counter(code for _, _, code in done if code != 200)
    print(f"load average at end: {open('/proc/loadavg').read().strip()}")
    print(f"normal stream: {args.streams} clients, {len(done)} requests, idle p99 {1000 * idle_p99:.0f} ms, "
          f"non-200: {dict(errors) or 'none'}; server RSS at the first case {rss0:.0f} MB\n")
    print("| case | all 100 answered, ms (median of rounds) | status codes | bare server: ms, codes | "
          "others' p99 / idle | RSS before -> after, MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (runs, floor, before, after) in results.items():
        others = [s for t, s, _ in done if any(t < t1 and t + s > t0 for t0, t1 in windows[name])]
        print(f"| {name} | {1000 * slowest(runs):.0f} | {codes(runs)} | {1000 * slowest(floor):.0f}, {codes(floor)} | "
              f"{p99(others) / idle_p99:.2f}x ({len(others)} requests) | {before:.0f} -> {after:.0f} "
              f"({100 * (after / rss0 - 1):+.1f}% vs first) |")


def slowest(runs: list[list[tuple[str, float]]]) -> float:
    """The median over rounds of the time until the last of a round's requests was answered."""
    return sorted(max(s for _, s in answers) for answers in runs)[len(runs) // 2]


def codes(runs: list[list[tuple[str, float]]]) -> str:
    counts = collections.Counter(code for answers in runs for code, _ in answers)
    return ", ".join(f"{c} x{k}" for c, k in sorted(counts.items()))


if __name__ == "__main__":
    main()
