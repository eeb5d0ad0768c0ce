"""The batched (numpy) load-step metrics against the simple per-request reference implementations."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
import tracemalloc
from collections import Counter

import numpy as np
import pytest

from llmbench.measurement.generation import Generation
from llmbench.measurement.metrics import (
    Summary,
    chunk_token_times,
    expand_token_times,
    generation_metrics,
    many_generation_metrics,
)
from llmbench.measurement.sketch import RELATIVE_ERROR
from llmbench.serving import _tally, token_times
from llmbench.serving._loops import StepPlan, StepRun, closed_loop
from llmbench.serving._metrics import SLO, request_metrics, step_metrics
from llmbench.serving._records import RequestRecord, RequestSpec
from llmbench.serving._stream import parse_openai_stream
from llmbench.serving._tally import StepRecords


def random_times(rng: random.Random, n: int, start: float) -> list[float]:
    times, t = [], start
    for _ in range(n):
        t += rng.choice([0.0, rng.random() * 0.05])  # repeated stamps happen (one read, many tokens)
        times.append(t)
    return times


def test_many_generation_metrics_equal_generation_metrics() -> None:
    rng = random.Random(0)
    starts, ends, chunk_times, chunk_tokens, per, reference = [], [], [], [], [], []
    for _ in range(300):
        chunks = rng.choice([0, 1, 2, rng.randint(3, 12)])
        start = rng.random() * 100
        times = random_times(rng, chunks, start + rng.random())
        tokens = [rng.choice([1, 1, 2, rng.randint(1, 9)]) for _ in times]
        end = (times[-1] if times else start) + rng.random() * 0.01
        starts.append(start), ends.append(end), per.append(chunks)
        chunk_times += times
        chunk_tokens += tokens
        stamps = chunk_token_times(times, tokens)
        reference.append(generation_metrics(Generation("", [0] * len(stamps), 7, start, stamps, end, "length")))
    many = many_generation_metrics(
        np.array(starts), np.array(ends), np.array(chunk_times), np.array(chunk_tokens), np.array(per)
    )

    def same(a: float | None, b: float) -> bool:
        return ((a is None or math.isnan(a)) and math.isnan(b)) or (a is not None and a == pytest.approx(b))

    for index, metrics in enumerate(reference):
        assert metrics.output_tokens == many.output_tokens[index]
        assert same(metrics.ttft_s, many.ttft_s[index])
        assert same(metrics.decode_s, many.decode_s[index])
        assert same(metrics.decode_tok_s, many.decode_tok_s[index])
        assert same(metrics.itl_s, many.itl_s[index])
        assert same(metrics.e2e_s, many.e2e_s[index])
        mine = many.gap_owner == index
        expanded = np.repeat(many.gap_values[mine], many.gap_weights[mine])
        assert sorted(expanded.tolist()) == pytest.approx(sorted(metrics.itl_gaps))
    pooled = [gap for metrics in reference for gap in metrics.itl_gaps]
    weighted = Summary.of_weighted(many.gap_values, many.gap_weights).as_dict()
    assert weighted == pytest.approx(Summary.of(pooled).as_dict())


def test_weighted_summary_equals_the_expanded_one() -> None:
    rng = random.Random(5)
    for size in (1, 2, 3, 10, 500):
        values = np.array([rng.choice([0.0, rng.random()]) for _ in range(size)])
        weights = np.array([rng.choice([0, 1, 2, rng.randint(1, 60)]) for _ in range(size)])
        expanded = np.repeat(values, weights)
        expected = Summary.of_array(expanded).as_dict()
        assert Summary.of_weighted(values, weights).as_dict() == pytest.approx(expected, nan_ok=True)


def test_expand_token_times_equals_token_times() -> None:
    rng = random.Random(1)
    chunk_times, chunk_tokens, previous, expected = [], [], [], []
    for _ in range(200):
        chunks = rng.randint(1, 6)
        times = sorted(rng.random() * 10 for _ in range(chunks))
        tokens = [rng.randint(1, 5) for _ in range(chunks)]
        expected += token_times(times, tokens)
        chunk_times += times
        chunk_tokens += tokens
        previous += times[:1] + times[:-1]
    expanded = expand_token_times(np.array(chunk_times), np.array(chunk_tokens), np.array(previous))
    assert expanded.tolist() == pytest.approx(expected)


def test_summary_of_array_equals_summary_of() -> None:
    rng = random.Random(2)
    for size in (1, 2, 5, 100, 3000):
        values = [rng.random() for _ in range(size)] + [math.nan]
        assert Summary.of_array(np.array(values)).as_dict() == pytest.approx(Summary.of(values).as_dict())
    assert Summary.of_array(np.array([])).count == 0


def test_step_metrics_equal_per_request_reference() -> None:
    rng = random.Random(3)
    records = []
    for index in range(400):
        sent = 100 + index * 0.01 + rng.random() * 0.005
        record = RequestRecord(index=index, scheduled=sent - rng.random() * 0.001, sent=sent)
        chunks = rng.randint(1, 8)
        times = sorted(sent + 0.02 + rng.random() * 0.5 for _ in range(chunks))
        record.set_chunks(times, [rng.randint(1, 4) for _ in range(chunks)])
        record.end = times[-1] + 0.001
        if index % 37 == 0:
            record.error = "http_500"
        records.append(record)
    window = (100.5, 103.2)
    slo = SLO(ttft_s=0.3, itl_s=0.1, e2e_s=0.5)
    result = step_metrics(records, window, slo)
    ok = [r for r in records if r.ok]
    measured = [(r, request_metrics(r)) for r in ok if window[0] <= r.sent < window[1]]
    assert result["measured_requests"] == len(measured)
    assert result["ttft_s"] == pytest.approx(Summary.of(m.ttft_s for _, m in measured).as_dict())
    assert result["e2e_s"] == pytest.approx(Summary.of(m.e2e_s for _, m in measured).as_dict())
    gaps = [g for _, m in measured for g in m.itl_gaps]
    assert result["itl_s"] == pytest.approx(Summary.of(gaps).as_dict())
    assert result["decode_tok_s"] == pytest.approx(Summary.of(m.decode_tok_s for _, m in measured).as_dict())
    assert result["output_tokens"]["mean"] == pytest.approx(sum(m.output_tokens for _, m in measured) / len(measured))
    in_window = [t for r in ok for t in r.token_times or [] if window[0] <= t <= window[1]]
    assert result["output_tok_s"] == pytest.approx(len(in_window) / (window[1] - window[0]))
    per_second = Counter(int(t - window[0]) for t in in_window)
    assert result["output_tok_s_peak"] == max(per_second.get(i, 0) for i in range(int(window[1] - window[0])))
    finished = sum(1 for r in ok if window[0] <= r.end <= window[1])
    assert result["request_throughput"] == pytest.approx(finished / (window[1] - window[0]))
    good = sum(1 for _, m in measured if slo.met_by(m))
    assert result["goodput_fraction"] == pytest.approx(good / len(measured))
    assert result["errors"] == {"http_500": sum(1 for r in records if not r.ok)}
    assert result["analysis_s"] >= 0


def stream(tokens: int, chat: bool) -> list[bytes]:
    events = []
    if chat:
        events.append({"choices": [{"delta": {"role": "assistant"}}]})
    for index in range(tokens):
        events.append({"choices": [{"delta": {"content": f" t{index}"}} if chat else {"text": f" t{index}"}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": tokens}})
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


@pytest.mark.parametrize("chat", [False, True])
def test_counting_shortcut_equals_the_full_parser(chat: bool) -> None:
    rng = random.Random(4)
    for _ in range(200):
        events = stream(rng.randint(1, 12), chat)
        reads, t, index = [], 1.0, 0
        while index < len(events):  # events grouped into reads at random (always whole events)
            take = rng.randint(1, 4)
            t += rng.random()
            reads.append((t, b"".join(events[index : index + take])))
            index += take
        fast = parse_openai_stream(reads, need_text=False)
        full = parse_openai_stream(reads, need_text=True)
        assert fast.chunk_times == full.chunk_times and fast.chunk_tokens == full.chunk_tokens
        assert fast.completion_tokens == full.completion_tokens and fast.prompt_tokens == full.prompt_tokens
        assert fast.text == ""  # the shortcut was taken


def irregular(events: list[bytes], rng: random.Random) -> list[bytes]:
    """The same stream with what servers do now and then: CRLF endings, comments, multi-line data."""
    kind = rng.choice(["crlf", "comment", "multiline", "none"])
    if kind == "crlf":
        return [e.replace(b"\n", b"\r\n") for e in events]
    if kind == "comment":
        at = rng.randrange(len(events))
        return [*events[:at], b": keep-alive\n\n", *events[at:]]
    if kind == "multiline":
        at = rng.randrange(len(events) - 2)  # a content event's JSON split over two data lines
        head, _, rest = events[at].partition(b", ")
        if rest:
            events = [*events[:at], head + b",\ndata: " + rest, *events[at + 1 :]]
    return events


@pytest.mark.parametrize("chat", [False, True])
def test_counting_shortcut_equals_the_full_parser_on_any_split(chat: bool) -> None:
    """Reads cut anywhere (inside an event, between the two line feeds of a separator) and
    irregular streams: the shortcut either gives the full parser's chunks or leaves them to it."""
    rng = random.Random(7)
    taken = 0
    for _ in range(400):
        data = b"".join(irregular(stream(rng.randint(1, 12), chat), rng))
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(0, min(6, len(data) - 1))))
        bounds = [0, *cuts, len(data)]
        reads = [(1.0 + i, data[a:b]) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
        fast = parse_openai_stream(reads, need_text=False)
        full = parse_openai_stream(reads, need_text=True)
        assert (fast.chunk_times, fast.chunk_tokens) == (full.chunk_times, full.chunk_tokens), reads
        assert fast.completion_tokens == full.completion_tokens
        taken += fast.text == ""
    assert 50 < taken < 400  # both paths ran


def synthetic_step(count: int, seed: int) -> list[RequestRecord]:
    """Requests 2 ms apart, each streaming 1-8 chunks of 1-4 tokens over up to half a second; some fail."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        sent = 100 + index * 0.002 + rng.random() * 0.005
        record = RequestRecord(index=index, scheduled=sent - rng.random() * 0.001, sent=sent)
        chunks = rng.randint(1, 8)
        times = sorted(sent + 0.02 + rng.random() * 0.5 for _ in range(chunks))
        record.set_chunks(times, [rng.randint(1, 4) for _ in range(chunks)])
        record.end = times[-1] + 0.001
        if index % 37 == 0:
            record.error = "http_500"
        record.attempts = 2 if index % 50 == 0 else 1  # sent again after a connection failed
        records.append(record)
    return records


def flat(result: dict[str, object]) -> dict[str, object]:
    """A step's numbers with its summaries spread out (``ttft_s.p50``), for pytest.approx."""
    out: dict[str, object] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out |= {f"{key}.{inner}": v for inner, v in value.items()}
        elif not isinstance(value, str):
            out[key] = value
    return out


def tallied(records: list[RequestRecord], window: tuple[float, float], slo: SLO | None, hold: int) -> StepRecords:
    """``records`` appended as a loop appends them (each when it is sent), tallied as they end."""
    now = [0.0]
    step = StepRecords(window[0], window[1], slo, hold=hold, clock=lambda: now[0])
    for record in records:
        now[0] = record.scheduled
        step.append(record)
    return step


@pytest.mark.parametrize("hold", [8, 100])
def test_a_tallied_step_equals_the_batched_step(hold: int) -> None:
    """Requests tallied as they end (and let go) give the step's metrics exactly, percentiles included."""
    records = synthetic_step(2000, seed=8)
    window = (100.5, 103.2)  # a warm-up before, requests still sent after: every edge is crossed
    slo = SLO(ttft_s=0.3, itl_s=0.1, e2e_s=0.5)
    expected = step_metrics(records, window, slo)
    step = tallied(records, window, slo, hold)
    assert step.tally.sent > 1000 and len(step) < 1000  # most were tallied and dropped
    found = step_metrics(step, window, slo)
    expected.pop("analysis_s"), found.pop("analysis_s")
    assert flat(found) == pytest.approx(flat(expected), rel=1e-12)
    assert found["itl_percentiles"] == found["request_percentiles"] == "exact"
    assert found["sent"] == 2000 and found["retries"] == 40


def test_a_step_past_the_exact_limits_is_within_the_histograms_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tally, "EXACT_REQUESTS", 300)
    monkeypatch.setattr(_tally, "EXACT_GAPS", 500)
    records = synthetic_step(3000, seed=9)
    window = (100.5, 105.0)
    slo = SLO(ttft_s=0.3)
    expected = step_metrics(list(records), window, slo)
    found = step_metrics(tallied(records, window, slo, 64), window, slo)
    assert found["itl_percentiles"] == found["request_percentiles"] == "histogram ±1%"
    for key in ("sent", "ok", "failed", "errors", "measured_requests", "request_throughput", "output_tok_s",
                "output_tok_s_peak", "goodput_req_s", "goodput_fraction", "client_bound"):  # fmt: skip
        assert found[key] == pytest.approx(expected[key], rel=1e-12), key
    for metric in ("ttft_s", "itl_s", "e2e_s", "decode_tok_s", "output_tokens", "send_lateness_s"):
        for field in ("count", "mean", "std", "min", "max"):
            assert found[metric][field] == pytest.approx(expected[metric][field], rel=1e-9), (metric, field)
        for field in ("p50", "p90", "p99"):
            assert found[metric][field] == pytest.approx(expected[metric][field], rel=RELATIVE_ERROR), (metric, field)


def test_goodput_is_unknown_when_the_step_was_tallied_under_another_slo() -> None:
    records = synthetic_step(500, seed=10)
    window = (100.0, 102.0)
    result = step_metrics(tallied(records, window, None, 16), window, SLO(ttft_s=0.3))
    assert result["goodput_req_s"] is None and result["goodput_fraction"] is None
    assert result["sent"] == 500


class InstantTarget:
    """Answers at once with four tokens: a load step that costs nothing but the client's bookkeeping."""

    label = "instant"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, spec: RequestSpec, record: RequestRecord) -> None:
        record.sent = time.perf_counter()
        await asyncio.sleep(0)
        now = time.perf_counter()
        record.set_chunks([now, now + 1e-6, now + 2e-6, now + 3e-6])
        record.status, record.end = 200, now + 4e-6


def closed_step(requests: int, slo: SLO | None = None) -> StepRun:
    target = InstantTarget()
    spec = RequestSpec("hi", None, None, 4)
    return asyncio.run(closed_loop(target, [spec], 8, StepPlan(None, requests, slo=slo)))


def test_a_long_step_keeps_a_bounded_number_of_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat over a long step: finished requests are tallied and let go, not kept."""
    monkeypatch.setattr(_tally, "EXACT_REQUESTS", 1000)
    monkeypatch.setattr(_tally, "EXACT_GAPS", 1000)
    peaks = {}
    for requests in (4000, 16000):
        tracemalloc.start()
        run = closed_step(requests, SLO(ttft_s=60.0))
        peaks[requests] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(run.records) <= _tally.HOLD  # what was still held when the step ended
        result = step_metrics(run.records, run.window, SLO(ttft_s=60.0))
        assert result["sent"] == result["ok"] == result["measured_requests"] == requests
        assert result["output_tokens"]["mean"] == 4 and result["goodput_fraction"] == 1.0
        assert result["itl_s"]["count"] == 3 * requests and result["itl_percentiles"] == "histogram ±1%"
    # Four times the requests: under 1 MB more at the peak (each kept request would cost ~300 bytes).
    assert peaks[16000] - peaks[4000] < 1_000_000, peaks
