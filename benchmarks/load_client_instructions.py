"""What llmbench's load client costs per request, in CPU instructions: a measure this noisy host can't blur.

``load_client.py`` compares request rates, which a shared 2-core machine moves by 10-20 % from one
run to the next. This script counts instructions instead, under valgrind's callgrind (Debian
package ``valgrind``), against the same nginx and canned 64-token stream: each client runs N1 and
then N2 requests in two processes, and ``(I(N2) - I(N1)) / (N2 - N1)`` is its cost per request,
start-up, imports and the first connections cancelled out. Counts repeat to within ~0.3 %.

Clients, each in its own process, at one concurrency (closed loop):

* ``llmbench``: ``run_load``'s steps (every read stamped, each response parsed when it ends, the
  step's TTFT / ITL / e2e percentiles and rates after it: all per-request work is in the count);
* ``aiohttp``: the bare loop of ``load_client.py`` (default session, counts reads);
* ``aiohttp_same_session``: the bare loop on llmbench's session settings (no cookie jar, no timer
  per request, one reusable payload, ``readany``).

Printed: instructions per request of each, and the ratios ``aiohttp / llmbench`` (the rate llmbench
reaches relative to the bare loop when the client's CPU is the limit; target >= 0.9) and
``aiohttp_same_session / llmbench`` (the bookkeeping's own cost).

Run: ``.venv/bin/python benchmarks/load_client_instructions.py [--concurrency 16] [--requests 300,1500]``
(about 5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_client  # the sibling benchmark: nginx, the canned stream, the bare loops

CLIENTS = ("llmbench", "aiohttp", "aiohttp_same_session")
WARMUP_REQUESTS = 50


def child(client: str, concurrency: int, requests: int, url: str) -> None:
    """Run ``requests`` requests after a warm-up (imports, first connections) of the same client."""
    if client == "llmbench":
        from llmbench import LoadConfig, ModelSetup, run_load

        for count in (WARMUP_REQUESTS, requests):
            config = LoadConfig(
                setup=ModelSetup(url), model_name="canned", concurrency=(concurrency,), duration_s=None,
                requests=count, max_new_tokens=load_client.TOKENS, prompt_tokens=16,
            )  # fmt: skip
            (step,) = (run_load(config).metrics or {})["steps"]
            if step["ok"] != count:
                sys.exit(f"llmbench: {step['ok']} of {count} requests ok ({step['errors']})")
        return
    for count in (WARMUP_REQUESTS, requests):
        same_session = client == "aiohttp_same_session"
        asyncio.run(load_client.bare_aiohttp(url, concurrency, float("inf"), count, same_session))


def instructions(client: str, concurrency: int, requests: int, url: str, folder: Path) -> int:
    out = folder / f"callgrind.{client}.{requests}"
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, __file__, "--child", client, "--concurrency", str(concurrency),
        "--requests", str(requests), "--url", url,
    ]  # fmt: skip
    # OpenBLAS's idle threads spin for a while after numpy's import, for as long as the clock says:
    # under valgrind that is a count of instructions unrelated to the requests. One thread: none.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        sys.exit(f"{client} under callgrind failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", default="300,1500", help="N1,N2: the two request counts")
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.concurrency, int(args.requests), args.url)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install -y valgrind")
    small, large = (int(n) for n in args.requests.split(","))
    with tempfile.TemporaryDirectory(prefix="load-client-instructions-") as tmp:
        folder = Path(tmp)
        nginx, url = load_client.start_nginx(folder)
        try:
            jobs = [(client, n) for client in CLIENTS for n in (small, large)]
            # Two at a time: a client under valgrind is ~50x slower, so nginx idles either way.
            with ThreadPoolExecutor(max_workers=2) as pool:
                counts = dict(
                    zip(
                        jobs,
                        pool.map(lambda job: instructions(job[0], args.concurrency, job[1], url, folder), jobs),
                        strict=True,
                    )
                )
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
    per_request = {client: (counts[client, large] - counts[client, small]) / (large - small) for client in CLIENTS}
    result = {
        "concurrency": args.concurrency,
        "requests": [small, large],
        "instructions_per_request": {client: round(value) for client, value in per_request.items()},
        "ratio_aiohttp_over_llmbench": round(per_request["aiohttp"] / per_request["llmbench"], 3),
        "ratio_aiohttp_same_session_over_llmbench": round(
            per_request["aiohttp_same_session"] / per_request["llmbench"], 3
        ),
        "target": 0.9,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
