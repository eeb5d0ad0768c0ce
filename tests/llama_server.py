"""llama.cpp's real HTTP server (llama-server, built by make), started by a test on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmbench.models import ModelRef

SERVER = Path(os.environ.get("LLMBENCH_LLAMA_SERVER", Path(sys.prefix) / "bin" / "llama-server"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    model: ModelRef, parallel: int = 4, port: int | None = None, wait: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """llama-server on 127.0.0.1 (a free port unless given), healthy unless ``wait=False``; the caller stops it."""
    if not SERVER.exists():
        pytest.fail(f"{SERVER} is missing: run make install (it builds llama.cpp's server)")
    port = port or free_port()
    process = subprocess.Popen(
        [str(SERVER), "-m", str(model.path), "--host", "127.0.0.1", "--port", str(port), "-c", str(1024 * parallel),
         "-np", str(parallel), "-t", "2", "-fa", "off", "--no-cache-prompt", "--log-disable", "--no-slots"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    if not wait:
        return process, url
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("llama-server did not become healthy within 60 s")


FAULTS = ("ok", "http500", "http429", "stall", "malformed", "disconnect")


@contextmanager
def fault_proxy(upstream: str, schedule: tuple[str, ...] = FAULTS) -> Iterator[str]:
    """A proxy on 127.0.0.1 in front of a real server; request ``i`` gets fault ``schedule[i % len]``.

    ``ok`` forwards untouched; ``http500`` / ``http429`` answer with llama.cpp's error body instead;
    ``stall`` forwards two reads of the real stream, then goes silent; ``malformed`` forwards two
    reads, then a line that is not server-sent events, then the rest; ``disconnect`` forwards two
    reads, then drops the connection. Everything else comes from the real server.
    """
    import asyncio
    import itertools
    import threading

    import aiohttp
    from aiohttp import web

    kinds = itertools.cycle(schedule)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        kind = next(kinds)
        body = await request.read()
        if kind in ("http500", "http429"):
            status = int(kind[4:])
            error = {"code": status, "message": f"injected {status}", "type": "server_error"}
            return web.json_response({"error": error}, status=status)
        session: aiohttp.ClientSession = state["session"]
        response = web.StreamResponse()
        try:
            async with session.post(
                upstream + request.path, data=body, headers={"Content-Type": "application/json"}
            ) as up:
                response.set_status(up.status)
                response.content_type = up.content_type
                await response.prepare(request)
                reads = 0
                async for chunk in up.content.iter_any():
                    if reads == 2 and kind in ("stall", "disconnect"):
                        break  # the upstream request ends here, freeing the server's slot
                    if reads == 2 and kind == "malformed":
                        await response.write(b"this line is not server-sent events\n\n")
                    await response.write(chunk)
                    reads += 1
            if kind == "stall":
                await asyncio.sleep(3)  # silence: the client gives up after its 1 s stall timeout
            elif kind == "disconnect" and request.transport is not None:
                request.transport.close()
            else:
                await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away first (it gave up on a stalled stream)
        return response

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        # A connection per request: llama-server closes keep-alive connections after a stream.
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        state["runner"] = runner
        state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    async def stop() -> None:
        await state["runner"].cleanup()
        await state["session"].close()

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
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
