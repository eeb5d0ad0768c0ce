"""The metric definitions, checked against scripted timestamps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmbench.backends.base import Generation
from llmbench.measurement.metrics import Summary, generation_metrics, percentile, summarise


def _generation(t_start: float, times: list[float], t_end: float, prompt: int = 10) -> Generation:
    return Generation("x" * len(times), list(range(len(times))), prompt, t_start, times, t_end, "length")


def test_definitions_on_scripted_timestamps() -> None:
    # prefill 0.5 s, then gaps of 0.1, 0.2, 0.3 s; the runtime returns 0.05 s after the last token.
    m = generation_metrics(_generation(10.0, [10.5, 10.6, 10.8, 11.1], 11.15, prompt=100))
    assert m.output_tokens == 4
    assert m.ttft_s == pytest.approx(0.5)
    assert m.prefill_tok_s == pytest.approx(200.0)
    assert m.decode_s == pytest.approx(0.6)
    assert m.decode_tok_s == pytest.approx(3 / 0.6)
    assert m.itl_s == pytest.approx(0.2)  # (t_last - t_first) / (n - 1), TTFT excluded
    assert m.itl_gaps == pytest.approx((0.1, 0.2, 0.3))
    assert m.e2e_s == pytest.approx(1.15)
    assert m.e2e_tok_s == pytest.approx(4 / 1.15)


def test_single_token_has_no_decode_rate() -> None:
    m = generation_metrics(_generation(0.0, [0.25], 0.3))
    assert m.ttft_s == pytest.approx(0.25)
    assert m.decode_tok_s is None and m.itl_s is None
    assert m.itl_gaps == ()


def test_no_tokens() -> None:
    m = generation_metrics(_generation(0.0, [], 0.3))
    assert m.output_tokens == 0 and math.isnan(m.ttft_s) and m.e2e_s == pytest.approx(0.3)


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.4]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_summary_counts_and_ignores_missing() -> None:
    s = Summary.of([1.0, None, 3.0, float("nan"), 2.0])
    assert s.count == 3 and s.mean == pytest.approx(2.0) and s.std == pytest.approx(1.0)
    assert s.min == 1.0 and s.max == 3.0 and s.p50 == 2.0
    empty = Summary.of([])
    assert empty.count == 0 and math.isnan(empty.mean)


def test_summarise_pools_gaps_across_repetitions() -> None:
    runs = [
        generation_metrics(_generation(0.0, [0.1, 0.2, 0.3], 0.3)),
        generation_metrics(_generation(0.0, [0.2, 0.6], 0.6)),
    ]
    summary = summarise(runs)
    assert summary["itl_gap_s"].count == 3  # 2 gaps + 1 gap
    assert summary["itl_gap_s"].max == pytest.approx(0.4)
    assert summary["ttft_s"].count == 2 and summary["ttft_s"].mean == pytest.approx(0.15)
