"""A misbehaving OpenAI-compatible server on 127.0.0.1, for fault tests.

The path prefix picks the behaviour: ``http://127.0.0.1:PORT/<mode>/v1/completions``. Modes:
``ok`` (one event per token), ``packed`` (four tokens per network write), ``http500``, ``http429``,
``stall`` (two tokens, then silence), ``malformed`` (not SSE), ``disconnect`` (the connection
drops mid-stream), ``slow`` (headers only after 1.5 s), ``error_event`` (an error inside the stream),
and, for the wire layer:

* ``ignores_eos``: stops after :data:`EOS_AFTER` tokens with ``finish_reason: stop`` whatever
  ``ignore_eos`` says (OpenAI, Ollama, TGI, llama-cpp-python do): ``llmbench run URL/ignores_eos
  -o model=m`` meets a server that produces fewer tokens than forced;
* ``strings_only``: refuses a prompt of token ids with HTTP 500, as llama-cpp-python's server does;
* ``no_usage``: streams without the usage event (llama-cpp-python's server);
* ``drop_after_read``: reads the request, then closes the connection without answering;
* ``close_after``: answers, then closes the keep-alive connection without saying so (the next
  request on it finds it closed);
* ``echo_key``: HTTP 401 whose body echoes the ``Authorization`` header it got.

Every mode also answers ``GET /<mode>/v1/models`` (one model, ``sse-test``), ``/<mode>/tokenize``
and ``/<mode>/detokenize`` (one token per character, its code point, no BOS), and unstreamed
requests (``"stream": false``: one token, with ``usage``). ``usage.prompt_tokens`` is the prompt's
length in those tokens. ``HITS`` counts the requests each mode received; ``SEEN_HEADERS``,
``SEEN_BODIES`` and ``SEEN_PATHS`` keep what they carried.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKENS = 16
EOS_AFTER = 5
MODEL = "sse-test"
HITS: Counter[str] = Counter()
SEEN_HEADERS: list[dict[str, str]] = []
SEEN_BODIES: list[dict[str, Any]] = []
SEEN_PATHS: list[str] = []


def _chunk(index: int, text: str, usage: dict[str, int] | None = None, finish: str | None = None) -> bytes:
    payload: dict[str, Any] = {
        "id": "cmpl-test",
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
    }
    if usage is not None:
        payload = {"id": "cmpl-test", "object": "text_completion", "choices": [], "usage": usage}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _prompt_length(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if prompt is None:
        prompt = "".join(str(m.get("content", "")) for m in body.get("messages") or [])
    return len(prompt)


async def _handle(request: Any) -> Any:
    from aiohttp import web

    mode = request.match_info["mode"]
    body = await request.json()
    HITS[mode] += 1
    SEEN_HEADERS.append(dict(request.headers))
    SEEN_BODIES.append(body)
    SEEN_PATHS.append(request.path_qs)
    tokens = int(body.get("max_tokens", TOKENS))
    if mode == "drop_after_read":
        request.transport.close()
        return web.Response()
    if mode == "http500":
        return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)
    if mode == "http429":
        return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}}, status=429)
    if mode == "echo_key":
        message = f"invalid key: {request.headers.get('Authorization')}"
        return web.json_response({"error": {"message": message, "type": "auth"}}, status=401)
    if mode == "strings_only" and isinstance(body.get("prompt"), list):
        error = {"message": "prompt: Input should be a valid string", "type": "internal_server_error"}
        return web.json_response({"error": error}, status=500)
    prompt_tokens = _prompt_length(body)
    if mode == "ignores_eos":
        tokens = min(tokens, EOS_AFTER)
    finish = "stop" if mode == "ignores_eos" else "length"
    if not body.get("stream", False):
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1}
        choice = {"index": 0, "text": "tok0 ", "finish_reason": "length"}
        return web.json_response({"id": "cmpl-test", "object": "text_completion", "choices": [choice], "usage": usage})
    if mode == "slow":
        await asyncio.sleep(1.5)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if mode == "malformed":
        await response.write(b"this is not server-sent events\n\n")
        await response.write_eof()
        return response
    if mode == "error_event":
        await response.write(_chunk(0, "tok0 "))
        await response.write(b'data: {"error": {"message": "model crashed"}}\n\n')
        await response.write_eof()
        return response
    pending = b""
    for index in range(tokens):
        if mode == "stall" and index == 2:
            # Silent until the client gives up (never a fixed span a slow client might outlast), at most 30 s.
            for _ in range(300):
                if request.transport is None or request.transport.is_closing():
                    return response
                await asyncio.sleep(0.1)
        if mode == "disconnect" and index == 3:
            request.transport.close()
            return response
        pending += _chunk(index, f"tok{index} ", finish=finish if index == tokens - 1 else None)
        if mode != "packed" or index % 4 == 3:
            await response.write(pending)
            pending = b""
            await asyncio.sleep(0.005)
    if pending:
        await response.write(pending)
    if mode != "no_usage":
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": tokens + prompt_tokens}
        await response.write(_chunk(0, "", usage=usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    if mode == "close_after" and request.transport is not None:
        request.transport.close()
    return response


async def _models(request: Any) -> Any:
    from aiohttp import web

    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def _tokenize(request: Any) -> Any:
    from aiohttp import web

    body = await request.json()
    return web.json_response({"tokens": [ord(char) for char in str(body.get("content", body.get("prompt", "")))]})


async def _detokenize(request: Any) -> Any:
    from aiohttp import web

    body = await request.json()
    return web.json_response({"content": "".join(chr(int(t)) for t in body.get("tokens") or [])})


RECORDED = Path(__file__).parent / "data" / "recorded"


async def _replay(request: Any) -> Any:
    """Replay a recorded body: ``/recorded/<name>`` (TGI, HF) or Gemini's model path."""
    from aiohttp import web

    SEEN_HEADERS.append(dict(request.headers))
    name = request.match_info.get("name") or request.match_info["model"].split(":")[0]
    if name.endswith(".json"):
        status = int(name.rsplit("_", 1)[1].removesuffix(".json"))
        return web.Response(status=status, body=(RECORDED / name).read_bytes(), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in (RECORDED / name).read_bytes().split(b"\n\n"):
        if event.strip():
            await response.write(event + b"\n\n")
            await asyncio.sleep(0.01)
    await response.write_eof()
    return response


@contextmanager
def serve_app(app: Any, shutdown_timeout: float = 1.0) -> Iterator[str]:
    """Serve an aiohttp application on 127.0.0.1 (a free port) in a background thread; yield its URL."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def sse_server() -> Iterator[str]:
    """The misbehaving server and the recorded-response replays, on 127.0.0.1; yield the base URL."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/{mode}/v1/completions", _handle)
    app.router.add_post("/{mode}/v1/chat/completions", _handle)
    app.router.add_get("/{mode}/v1/models", _models)
    app.router.add_post("/{mode}/tokenize", _tokenize)
    app.router.add_post("/{mode}/detokenize", _detokenize)
    app.router.add_post("/recorded/{name}/generate_stream", _replay)
    app.router.add_post("/recorded/{name}", _replay)
    app.router.add_post("/gemini/{version}/models/{model}", _replay)
    with serve_app(app) as url:
        yield url
