"""The calibration a run's roofline uses: the newest stored for this machine and device, else measured now.

Measured on first need (the first generation run on a machine and device without one: about a
second on a CPU), stored in the results store, and kept for the rest of the process so that a
sweep or a test session measures once. It runs after the model is closed and outside the memory
tracker, so it never counts in a run's peak memory or timings.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.measurement.results import GenerationResult
from llmbench.planning import DecodeWork, roofline, scaled
from llmbench.store import Store
from llmbench.system.calibrate import Calibration, calibrate, machine_key

_MEASURED: dict[str, Calibration] = {}
"""Calibrations this process measured or read, by device."""


def forget_calibrations() -> None:
    """Drop this process's remembered calibrations (tests)."""
    _MEASURED.clear()


def calibration_for(device: str) -> Calibration:
    """The newest stored calibration of ``device`` on this machine; measured and stored when there is none."""
    remembered = _MEASURED.get(device)
    stored = None
    try:
        with Store() as store:
            stored = store.latest_calibration(machine_key(), device)
            if stored is None:
                stored = remembered or calibrate(device)
                store.save_calibration(machine_key(), stored)
    except (LLMBenchError, sqlite3.Error):  # a store that cannot be written: measure, keep it here
        stored = stored or remembered or calibrate(device)
    _MEASURED[device] = stored
    return stored


def with_roofline(
    result: GenerationResult, work: DecodeWork, prompt_tokens: int
) -> tuple[GenerationResult, dict[str, Any]]:
    """``result`` with its roofline (and the fraction summaries); the calibration used, for the environment."""
    calibration = calibration_for(work.device)
    decode, prefill = result.summary.get("decode_tok_s"), result.summary.get("prefill_tok_s")
    produced = result.summary.get("output_tokens")
    new_tokens = produced.mean if produced is not None and produced.count else 0.0
    figures = roofline(
        work,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        bandwidth_bytes_s=calibration.bandwidth_bytes_s,
        matmul_flops=calibration.matmul_flops,
        decode_tok_s=decode.mean if decode is not None and decode.count else None,
        prefill_tok_s=prefill.mean if prefill is not None and prefill.count else None,
        calibrated_at=calibration.measured_at,
    )
    summary = dict(result.summary)
    for key, rate, bound in (
        ("decode_roofline", decode, figures.decode_bound_tok_s),
        ("prefill_roofline", prefill, figures.prefill_bound_tok_s),
    ):
        fractions = scaled(rate, bound)
        if fractions is not None:
            summary[key] = fractions
    return replace(result, roofline=figures, summary=summary), calibration.to_json()
