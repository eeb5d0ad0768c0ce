"""A misbehaving OpenAI-compatible server on 127.0.0.1, for fault tests.

The path prefix picks the behaviour: ``http://127.0.0.1:PORT/<mode>/v1/completions``. Modes:
``ok`` (one event per token), ``packed`` (four tokens per network write), ``http500``, ``http429``,
``stall`` (two tokens, then silence), ``malformed`` (not SSE), ``disconnect`` (the connection
drops mid-stream), ``slow`` (headers only after 1.5 s), ``error_event`` (an error inside the stream).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKENS = 16


def _chunk(index: int, text: str, usage: dict[str, int] | None = None, finish: str | None = None) -> bytes:
    payload: dict[str, Any] = {
        "id": "cmpl-test",
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
    }
    if usage is not None:
        payload = {"id": "cmpl-test", "object": "text_completion", "choices": [], "usage": usage}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _handle(request: Any) -> Any:
    from aiohttp import web

    mode = request.match_info["mode"]
    body = await request.json()
    tokens = int(body.get("max_tokens", TOKENS))
    if mode == "http500":
        return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)
    if mode == "http429":
        return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}}, status=429)
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
            await asyncio.sleep(3)
        if mode == "disconnect" and index == 3:
            request.transport.close()
            return response
        pending += _chunk(index, f"tok{index} ", finish="length" if index == tokens - 1 else None)
        if mode != "packed" or index % 4 == 3:
            await response.write(pending)
            pending = b""
            await asyncio.sleep(0.005)
    if pending:
        await response.write(pending)
    await response.write(
        _chunk(0, "", usage={"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8})
    )
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


RECORDED = Path(__file__).parent / "data" / "recorded"
SEEN_HEADERS: list[dict[str, str]] = []


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
    app.router.add_post("/recorded/{name}/generate_stream", _replay)
    app.router.add_post("/recorded/{name}", _replay)
    app.router.add_post("/gemini/{version}/models/{model}", _replay)
    with serve_app(app) as url:
        yield url
