"""TGI native, HF InferenceClient and Gemini (google-genai) against recorded responses on 127.0.0.1.

See tests/data/recorded/README.md: the bodies follow each API's documented wire format.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmbench.serving import LoadConfig, run_load
from sse_server import SEEN_HEADERS, sse_server


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with sse_server() as url:
        yield url


def one_step(**kwargs: Any) -> dict[str, Any]:
    record = run_load(LoadConfig(concurrency=[2], requests=4, duration_s=None, max_tokens=16, **kwargs))
    (step,) = record.metrics["steps"]
    assert step["ok"] + step["failed"] == step["sent"] == 4
    return step


def test_tgi_native_stream(server: str) -> None:
    step = one_step(target=f"{server}/recorded/tgi_stream.sse", api="tgi")
    assert step["ok"] == 4
    assert step["output_tokens"]["mean"] == 6  # details.generated_tokens, the special </s> included
    assert step["itl_s"]["count"] == 4 * 5


@pytest.mark.parametrize(
    ("name", "kind"), [("tgi_error_event.sse", "server_error"), ("tgi_error_422.json", "http_422")]
)
def test_tgi_errors(server: str, name: str, kind: str) -> None:
    step = one_step(target=f"{server}/recorded/{name}", api="tgi")
    assert step["errors"] == {kind: 4}


def test_hf_inference_client(server: str) -> None:
    step = one_step(target=f"{server}/recorded/tgi_stream.sse", api="hf")
    assert step["ok"] == 4 and step["output_tokens"]["mean"] == 6


def test_hf_inference_client_errors(server: str) -> None:
    step = one_step(target=f"{server}/recorded/tgi_error_422.json", api="hf")
    assert list(step["errors"]) in (["server_error"], ["http_422"])


def test_gemini_stream_shares_gaps_by_token_counts(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.genai", reason="the gemini extra is not installed")
    monkeypatch.setenv("LLMBENCH_TEST_GEMINI_KEY", "AIza-test-key")
    SEEN_HEADERS.clear()
    step = one_step(
        target=f"{server}/gemini", api="gemini", model_name="gemini_stream.sse", api_key_env="LLMBENCH_TEST_GEMINI_KEY"
    )
    assert step["ok"] == 4
    assert step["output_tokens"]["mean"] == 11  # usageMetadata.candidatesTokenCount: 3 chunks, 11 tokens
    assert step["itl_s"]["count"] == 4 * 10
    assert SEEN_HEADERS and SEEN_HEADERS[0].get("x-goog-api-key") == "AIza-test-key"


@pytest.mark.parametrize(
    ("name", "kind"), [("gemini_error_400.json", "http_400"), ("gemini_error_429.json", "http_429")]
)
def test_gemini_errors(server: str, name: str, kind: str) -> None:
    pytest.importorskip("google.genai", reason="the gemini extra is not installed")
    step = one_step(target=f"{server}/gemini", api="gemini", model_name=name)
    assert step["errors"] == {kind: 4}
