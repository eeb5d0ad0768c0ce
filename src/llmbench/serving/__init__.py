"""Serving: the load client (loops, arrivals, step metrics) and its targets.

Each step is a closed loop (fixed concurrency) or an open loop (request rate, Poisson or gamma
arrivals); its metrics use the single-run definitions (``llmbench.measurement.metrics``). The
load-test scenario that drives the steps and stores the run is ``llmbench.scenarios.load``;
a model in this process is served batched (:class:`BatchedTarget`) or one request at a time
(:class:`InProcessTarget`);
request bodies, SSE parsing, auth and retries are ``llmbench.transport``'s.
"""

from llmbench.measurement.metrics import chunk_token_times as token_times
from llmbench.serving._arrivals import Distribution
from llmbench.serving._batched import BatchedTarget
from llmbench.serving._loops import StepPlan, StepRun, closed_loop, open_loop
from llmbench.serving._metrics import SLO, step_metrics
from llmbench.serving._records import RequestRecord, RequestSpec
from llmbench.serving._targets import (
    Endpoint,
    GeminiTarget,
    HFInferenceTarget,
    InProcessTarget,
    OpenAITarget,
    Target,
    TGITarget,
    api_key_from,
)

__all__ = [
    "SLO",
    "BatchedTarget",
    "Distribution",
    "Endpoint",
    "GeminiTarget",
    "HFInferenceTarget",
    "InProcessTarget",
    "OpenAITarget",
    "RequestRecord",
    "RequestSpec",
    "StepPlan",
    "StepRun",
    "TGITarget",
    "Target",
    "api_key_from",
    "closed_loop",
    "open_loop",
    "step_metrics",
    "token_times",
]
