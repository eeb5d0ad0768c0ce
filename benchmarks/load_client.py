"""How many requests per second one llmbench client process sustains, against bare loops and GuideLLM.

The target is nginx (Debian's package, started here on 127.0.0.1 with a config of this script's)
answering every POST with the same canned stream of 64 server-sent events of one token each, plus
the usage chunk and ``[DONE]``: a server that costs almost nothing, so the client is what is
measured. At each concurrency (closed loop, N requests in flight) the script runs, in one process
each and alternating the order:

* ``llmbench``: ``llmbench.serving.run_load`` with full per-token bookkeeping (every read
  timestamped, parsed after the step into one timestamp per token, TTFT / ITL / e2e percentiles,
  usage reconciled); its rate counts the step's analysis time with the window;
* ``aiohttp``: a bare asyncio + aiohttp loop written below that only counts chunks (the ceiling);
* ``aiohttp_same_session``: that loop on llmbench's session settings (no cookie jar, no timer per
  request, one reusable payload, ``readany``): what llmbench's bookkeeping alone costs;
* ``httpx``: the same bare loop on httpx's AsyncClient (why llmbench's client uses aiohttp);
* ``guidellm``: GuideLLM 0.8.1 (vllm-project), concurrent profile, with a local tokenizer folder,
  from the side environment ``.bench-envs/guidellm`` that the script creates with pip on first use
  (``--skip-guidellm`` leaves it out).

Printed per concurrency: the best requests/s of each; ``ratio_llmbench_over_aiohttp``, the median
over rounds of llmbench / aiohttp measured back to back (target >= 0.9: this host is shared and
noisy, and a paired median is what survives its drifts), every round's ratio, the best-over-best
ratio, the same paired median against ``aiohttp_same_session`` (the bookkeeping's own cost, since
part of what llmbench gains on the plain loop is its session settings), and llmbench / guidellm
(target >= 4).

Run: ``.venv/bin/python benchmarks/load_client.py [--seconds 8] [--concurrency 1,16,64]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _side_envs  # the side environments' maker, shared with scoring_speed.py

TOKENS = 64
ROOT = Path(__file__).resolve().parents[1]
GUIDELLM_PACKAGES = ["torch==2.13.0", "guidellm==0.8.1"]


def canned_stream(chat: bool = False) -> str:
    events = []
    for index in range(TOKENS):
        finish = None if index < TOKENS - 1 else "length"
        choice = {"index": 0, "delta": {"content": f" tok{index}"}} if chat else {"index": 0, "text": f" tok{index}"}
        payload = {"id": "cmpl-1", "object": "chat.completion.chunk" if chat else "text_completion", "model": "canned",
                   "choices": [{**choice, "finish_reason": finish}]}  # fmt: skip
        events.append("data: " + json.dumps(payload, separators=(",", ":")))
    usage = {"id": "cmpl-1", "object": "text_completion", "model": "canned", "choices": [],
             "usage": {"prompt_tokens": 16, "completion_tokens": TOKENS, "total_tokens": TOKENS + 16}}  # fmt: skip
    events.append("data: " + json.dumps(usage, separators=(",", ":")))
    events.append("data: [DONE]")
    return "\n\n".join(events) + "\n\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        sys.exit("nginx is not installed: apt-get install -y nginx")
    port = free_port()
    (folder / "logs").mkdir()
    (folder / "www" / "v1").mkdir(parents=True)
    (folder / "www" / "v1" / "chat").mkdir()
    (folder / "www" / "v1" / "completions").write_text(canned_stream())
    (folder / "www" / "v1" / "chat" / "completions").write_text(canned_stream(chat=True))  # what GuideLLM sends
    for path in (folder, folder / "www", folder / "www" / "v1", folder / "www" / "v1" / "chat"):
        path.chmod(0o755)  # nginx's workers run as another user
    for path in (folder / "www" / "v1" / "completions", folder / "www" / "v1" / "chat" / "completions"):
        path.chmod(0o644)
    config = folder / "nginx.conf"
    config.write_text(
        f"""
worker_processes 1;
daemon off;
error_log {folder}/logs/error.log warn;
pid {folder}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {folder}/www;
        location = /health {{ return 200 "ok"; }}
        location = /v1/models {{
            default_type application/json;
            return 200 '{{"object":"list","data":[{{"id":"canned","object":"model"}}]}}';
        }}
        location / {{
            default_type text/event-stream;
            # POST to a static file is 405 in nginx: turn it into the file itself.
            error_page 405 =200 $uri;
        }}
    }}
}}
"""
    )
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(folder)], stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("nginx did not start: " + (process.stderr.read().decode() if process.stderr else ""))


BODY = json.dumps({"model": "canned", "prompt": "hello", "max_tokens": TOKENS, "stream": True}).encode()


async def bare_aiohttp(
    url: str, concurrency: int, seconds: float, requests: int | None = None, same_session: bool = False
) -> float:
    """Requests/s of a bare aiohttp loop that counts reads, for ``seconds`` or ``requests`` requests.

    ``same_session``: on llmbench's session settings and reads (no cookie jar, no timer per request,
    one reusable payload, ``readany``) and none of its bookkeeping; otherwise aiohttp's defaults.
    """
    import aiohttp

    done = issued = 0
    stop = time.perf_counter() + seconds
    limit = requests if requests is not None else 1 << 62
    connector = aiohttp.TCPConnector(limit=concurrency)
    settings: dict[str, Any] = {}
    data: Any = BODY
    if same_session:
        settings = {
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=10),
            "cookie_jar": aiohttp.DummyCookieJar(),
        }
        data = aiohttp.BytesPayload(BODY, content_type="application/json")
    async with aiohttp.ClientSession(connector=connector, **settings) as session:

        async def worker() -> None:
            nonlocal done, issued
            while time.perf_counter() < stop and issued < limit:
                issued += 1
                async with session.post(url + "/v1/completions", data=data) as response:
                    chunks = 0
                    if same_session:
                        read = response.content.readany
                        while await read():
                            chunks += 1
                    else:
                        async for _ in response.content.iter_any():
                            chunks += 1
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def bare_httpx(url: str, concurrency: int, seconds: float) -> float:
    try:
        import httpx
    except ImportError:
        return float("nan")
    done = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with client.stream("POST", url + "/v1/completions", content=BODY) as response:
                    chunks = 0
                    async for _ in response.aiter_raw():
                        chunks += 1
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def llmbench_rate(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    """(requests/s counting the after-step parsing and metrics, requests/s over the window alone).

    The first is the figure compared with the bare loop: requests finished in the window divided
    by the window plus the time the step's analysis took (every token timestamped, per-request
    parsing, percentiles), so no bookkeeping is left out of it.
    """
    from llmbench import LoadConfig, ModelSetup, run_load

    config = LoadConfig(
        setup=ModelSetup(url),
        model_name="canned",
        concurrency=(concurrency,),
        duration_s=seconds,
        max_new_tokens=TOKENS,
        prompt_tokens=16,
    )
    record = run_load(config)
    (step,) = (record.metrics or {})["steps"]
    assert step["failed"] == 0, step["errors"]
    assert step["output_tokens"]["mean"] == TOKENS
    finished = step["request_throughput"] * step["window_s"]
    return finished / (step["window_s"] + step["analysis_s"]), step["request_throughput"]


def guidellm_rate(
    guidellm: Path | None, url: str, concurrency: int, seconds: float, folder: Path, tokenizer: Path | None
) -> float:
    if guidellm is None or tokenizer is None:
        return float("nan")
    output = folder / f"guidellm-{concurrency}.json"
    command = [
        str(guidellm), "run",
        "--backend", f"kind=openai_http,target={url},model=canned",
        "--profile", f"kind=concurrent,streams={concurrency}",
        "--constraint", f"kind=max_duration,seconds={seconds:g}",
        "--tokenizer", f"kind=hf_auto,model={tokenizer}",
        "--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={TOKENS}",
        "--output", f"kind=json,path={output}",
        "--disable-console-interactive",
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds * 10 + 180)
    if proc.returncode != 0:
        print(f"guidellm failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True)
        return float("nan")
    return _guidellm_requests_per_second(json.loads(output.read_text()))


def _guidellm_requests_per_second(report: dict) -> float:  # type: ignore[type-arg]
    benchmark = report["benchmarks"][0]
    metrics = benchmark["metrics"]
    rps = metrics["requests_per_second"]
    summary = rps.get("successful") or rps.get("total") or rps
    return float(summary.get("mean"))


def tokenizer_folder(folder: Path) -> Path | None:
    """SmolLM2's tokenizer saved as an HF folder (GuideLLM counts tokens with it)."""
    try:
        from transformers import AutoTokenizer

        from llmbench.models import resolve_model

        model = resolve_model(None)
        tokenizer = AutoTokenizer.from_pretrained(str(model.path.parent), gguf_file=model.path.name)
        out = folder / "tokenizer"
        tokenizer.save_pretrained(out)
        return out
    except Exception as exc:
        print(f"no tokenizer folder for GuideLLM ({exc})")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=6, help="Paired rounds (llmbench and the bare loop) per level.")
    parser.add_argument("--skip-guidellm", action="store_true", help="Leave GuideLLM out (it takes minutes).")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="load-client-") as tmp:
        folder = Path(tmp)
        nginx, url = start_nginx(folder)
        python = None if args.skip_guidellm else _side_envs.side_env("guidellm", GUIDELLM_PACKAGES)
        guidellm = python.with_name("guidellm") if python is not None else None
        tokenizer = tokenizer_folder(folder) if guidellm is not None else None
        results = []
        try:
            for concurrency in levels:
                rates: dict[str, list[float]] = {
                    "llmbench": [], "llmbench_window_only": [], "aiohttp": [], "aiohttp_same_session": []
                }  # fmt: skip
                order = ("llmbench", "aiohttp", "aiohttp_same_session")
                for round_index in range(args.rounds):
                    # llmbench and the bare loops back to back, the order alternating: each round's
                    # ratios compare runs seconds apart, which the host's drifts barely touch.
                    for name in order if round_index % 2 == 0 else order[::-1]:
                        if name == "llmbench":
                            full, window = llmbench_rate(url, concurrency, args.seconds)
                            rates["llmbench"].append(full)
                            rates["llmbench_window_only"].append(window)
                        elif name == "aiohttp":
                            rates["aiohttp"].append(asyncio.run(bare_aiohttp(url, concurrency, args.seconds)))
                        else:
                            rates[name].append(
                                asyncio.run(bare_aiohttp(url, concurrency, args.seconds, same_session=True))
                            )
                httpx_rate = asyncio.run(bare_httpx(url, concurrency, args.seconds))
                guide = (
                    float("nan")
                    if args.skip_guidellm
                    else guidellm_rate(guidellm, url, concurrency, args.seconds, folder, tokenizer)
                )
                paired = sorted(a / b for a, b in zip(rates["llmbench"], rates["aiohttp"], strict=True))
                same = sorted(a / b for a, b in zip(rates["llmbench"], rates["aiohttp_same_session"], strict=True))
                best = {name: max(values) for name, values in rates.items()}
                row = {
                    "concurrency": concurrency,
                    **{f"{name}_req_s": round(value, 1) for name, value in best.items()},
                    "httpx_req_s": round(httpx_rate, 1),
                    "guidellm_req_s": round(guide, 1),
                    "ratio_llmbench_over_aiohttp": round(statistics.median(paired), 3),
                    "ratio_llmbench_over_aiohttp_rounds": [round(r, 3) for r in paired],
                    "ratio_best_over_best": round(best["llmbench"] / best["aiohttp"], 3),
                    "ratio_llmbench_over_aiohttp_same_session": round(statistics.median(same), 3),
                    "ratio_llmbench_over_aiohttp_same_session_rounds": [round(r, 3) for r in same],
                    "ratio_llmbench_over_guidellm": round(best["llmbench"] / guide, 2) if guide == guide else None,
                    "ratio_httpx_over_aiohttp": round(httpx_rate / best["aiohttp"], 3),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
        print(
            json.dumps(
                {"targets": {"llmbench_over_aiohttp": 0.9, "llmbench_over_guidellm": 4.0}, "results": results}, indent=2
            )
        )


if __name__ == "__main__":
    main()
