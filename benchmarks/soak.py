"""Does a long load test's memory stay flat? The client's resident memory against the requests it sent.

nginx (started by ``load_client.py``'s helper on 127.0.0.1) answers every POST with the same canned
stream of 64 one-token events, usage and ``[DONE]``, so the client runs as fast as it can: the
worst case for what it keeps per request. One closed-loop step of ``llmbench load`` (the scenario's
``run_load``, as the CLI calls it; concurrency 64 by default) runs in this process for
``--minutes``; each time another ``--every`` requests have finished (and at least every
``--seconds``), the process's resident set size (``VmRSS``) is printed with the time and the
request count. After the step, its analysis runs and the RSS is read once more.

Verdict (``flat``): every reading after the first minute stays within 10 % of the first reading
taken at or after one minute. Before llmbench tallied requests as they end (issue 13, item 12),
the client kept ~0.57 KB per request: 244 MiB after 329k requests and 624 MiB after 1M.

Run: ``.venv/bin/python benchmarks/soak.py [--minutes 10] [--concurrency 64] [--every 200000] [--seconds 30]``
(``apt-get install -y nginx`` first).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_client  # the sibling benchmark: nginx and the canned stream

FIRST_MINUTE_S = 60.0
TOLERANCE = 0.10


def rss_mib() -> float:
    """This process's resident set size, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def soak(url: str, minutes: float, concurrency: int, every: int, seconds: float) -> dict[str, object]:
    from llmbench.harness import ModelSetup
    from llmbench.scenarios.load import LoadConfig, run_load

    series: list[dict[str, float]] = []
    started = time.perf_counter()
    mark = [every, seconds]

    def progress(label: str, done: int, total: int | None) -> None:
        elapsed = time.perf_counter() - started
        if done >= mark[0] or elapsed >= mark[1]:
            row = {"s": round(elapsed, 1), "requests": done, "rss_mib": round(rss_mib(), 1)}
            series.append(row)
            print(json.dumps(row), flush=True)
            mark[0] = (done // every + 1) * every
            mark[1] = (elapsed // seconds + 1) * seconds

    config = LoadConfig(
        setup=ModelSetup(model=url),
        model_name="canned",
        concurrency=(concurrency,),
        duration_s=minutes * 60,
        max_new_tokens=load_client.TOKENS,
        prompt_tokens=16,
    )
    before = rss_mib()
    record = run_load(config, None, progress)
    after = rss_mib()
    if record.metrics is None:
        sys.exit(f"the load test stored no metrics: {record.error}")
    step = record.metrics["steps"][0]
    later = [row for row in series if row["s"] >= FIRST_MINUTE_S]
    reference = later[0]["rss_mib"] if later else math.nan
    highest = max((row["rss_mib"] for row in later), default=math.nan)
    return {
        "minutes": minutes,
        "concurrency": concurrency,
        "sent": step["sent"],
        "failed": step["failed"],
        "request_throughput": round(step["request_throughput"], 1),
        "itl_percentiles": step.get("itl_percentiles"),
        "request_percentiles": step.get("request_percentiles"),
        "analysis_s": round(step["analysis_s"], 3),
        "rss_mib_before_step": round(before, 1),
        "rss_mib_after_analysis": round(after, 1),
        "rss_mib_at_first_minute": reference,
        "rss_mib_highest_after": highest,
        "growth_after_first_minute": round(highest / reference - 1, 4),
        "flat": highest <= reference * (1 + TOLERANCE) if later else None,  # None: a soak under a minute
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--every", type=int, default=200_000, help="print the RSS every this many requests")
    parser.add_argument("--seconds", type=float, default=30.0, help="and at least this often")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmbench-soak-") as tmp:
        nginx, url = load_client.start_nginx(Path(tmp))
        try:
            result = soak(url, args.minutes, args.concurrency, args.every, args.seconds)
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
