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


def stop_server(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Terminate a server started by a test; kill it if it has not exited within ``grace_s``
    (llama-server lets its slots finish first, which a loaded host can stretch past any grace)."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


FAULTS = ("ok", "http500", "http429", "stall", "malformed", "disconnect")


@contextmanager
def fault_proxy(upstream: str, schedule: tuple[str, ...] = FAULTS) -> Iterator[str]:
    """A proxy on 127.0.0.1 in front of a real server; request ``i`` gets fault ``schedule[i % len]``.

    ``ok`` forwards untouched; ``http500`` / ``http429`` answer with llama.cpp's error body instead;
    ``stall`` forwards two events of the real stream, then goes silent; ``malformed`` forwards two
    events, then a line that is not server-sent events, then the rest; ``disconnect`` forwards two
    events, then drops the connection. Everything else comes from the real server.
    """
    import asyncio
    import itertools

    import aiohttp
    from aiohttp import web

    from sse_server import serve_app

    kinds = itertools.cycle(schedule)
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
                # Faults come after two whole events, counted by event and not by read: a busy host can
                # hand the proxy a whole stream in one read, which must not slip through untouched.
                buffer, events = b"", 0
                async for chunk in up.content.iter_any():
                    if kind == "ok" or events >= 2:
                        await response.write(chunk)
                        continue
                    buffer += chunk
                    while events < 2 and b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        await response.write(event + b"\n\n")
                        events += 1
                    if events < 2:
                        continue
                    if kind in ("stall", "disconnect"):
                        break  # the upstream request ends here, freeing the server's slot
                    await response.write(b"this line is not server-sent events\n\n" + buffer)
                    buffer = b""
            if kind == "stall":
                # Silence until the client gives up (its stall timeout), never a fixed span it might
                # outlast on a busy host: a stall that ends by itself is a slow stream, not a stall.
                for _ in range(300):
                    if request.transport is None or request.transport.is_closing():
                        break
                    await asyncio.sleep(0.1)
            elif kind == "disconnect" and request.transport is not None:
                request.transport.close()
            else:
                await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away first (it gave up on a stalled stream)
        return response

    async def upstream_session(app: web.Application) -> Any:
        # A connection per request: llama-server closes keep-alive connections after a stream.
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        yield
        await state["session"].close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    app.cleanup_ctx.append(upstream_session)
    with serve_app(app, shutdown_timeout=5.0) as url:
        yield url
