"""Serving: load tests against OpenAI-compatible servers or in-process models.

    record = run_load(LoadConfig("http://127.0.0.1:8080", concurrency=[1, 2, 4], duration_s=20))

Each step is a closed loop (fixed concurrency) or an open loop (request rate, Poisson or gamma
arrivals); its metrics use the single-run definitions (``llmbench.measurement.metrics``).
"""

from llmbench.measurement.metrics import chunk_token_times as token_times
from llmbench.serving._load import LoadConfig, run_load, summary_rows
from llmbench.serving._metrics import SLO, step_metrics
from llmbench.serving._records import RequestRecord, RequestSpec
from llmbench.serving._stream import ParsedStream, parse_openai_stream, split_events
from llmbench.serving._targets import InProcessTarget, OpenAITarget

__all__ = [
    "SLO",
    "InProcessTarget",
    "LoadConfig",
    "OpenAITarget",
    "ParsedStream",
    "RequestRecord",
    "RequestSpec",
    "parse_openai_stream",
    "run_load",
    "split_events",
    "step_metrics",
    "summary_rows",
    "token_times",
]
