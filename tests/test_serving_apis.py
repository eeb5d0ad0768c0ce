"""TGI native, HF InferenceClient and Gemini (google-genai) against recorded responses on 127.0.0.1.

See tests/data/recorded/README.md: the bodies follow each API's documented wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from llmbench.serving import (
    GeminiTarget,
    HFInferenceTarget,
    OpenAITarget,
    RequestSpec,
    StepPlan,
    Target,
    TGITarget,
    api_key_from,
    closed_loop,
    step_metrics,
)
from sse_server import SEEN_HEADERS, sse_server


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with sse_server() as url:
        yield url


def one_step(target: Target, during: Any = None) -> dict[str, Any]:
    """Four requests, two at a time; ``during`` is called inside the step, once its target started."""
    body = target.body("Hello", None, 16) if isinstance(target, OpenAITarget) else b""
    spec = RequestSpec("Hello", None, None, 16, body)

    async def go() -> dict[str, Any]:
        await target.start()
        try:
            if during is not None:
                during()
            run = await closed_loop(target, [spec], 2, StepPlan(None, 4))
        finally:
            await target.close()
        return step_metrics(run.records, run.window)

    step = asyncio.run(go())
    assert step["ok"] + step["failed"] == step["sent"] == 4
    return step


def test_tgi_native_stream(server: str) -> None:
    step = one_step(TGITarget(f"{server}/recorded/tgi_stream.sse"))
    assert step["ok"] == 4
    assert step["output_tokens"]["mean"] == 6  # details.generated_tokens, the special </s> included
    assert step["itl_s"]["count"] == 4 * 5


@pytest.mark.parametrize(
    ("name", "kind"), [("tgi_error_event.sse", "server_error"), ("tgi_error_422.json", "http_422")]
)
def test_tgi_errors(server: str, name: str, kind: str) -> None:
    step = one_step(TGITarget(f"{server}/recorded/{name}"))
    assert step["errors"] == {kind: 4}


def test_hf_inference_client(server: str) -> None:
    step = one_step(HFInferenceTarget(f"{server}/recorded/tgi_stream.sse"))
    assert step["ok"] == 4 and step["output_tokens"]["mean"] == 6


def test_hf_inference_client_errors(server: str) -> None:
    step = one_step(HFInferenceTarget(f"{server}/recorded/tgi_error_422.json"))
    assert list(step["errors"]) in (["server_error"], ["http_422"])


def test_hf_inference_client_leaves_offline_mode_on_for_the_process(server: str) -> None:
    """llmbench's offline switch stays on for everything else while the endpoint is measured."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    seen: list[bool] = []
    try:
        step = one_step(
            HFInferenceTarget(f"{server}/recorded/tgi_stream.sse"), lambda: seen.append(constants.HF_HUB_OFFLINE)
        )
        after = constants.HF_HUB_OFFLINE
    finally:
        constants.HF_HUB_OFFLINE = previous
    assert step["ok"] == 4 and seen == [True] and after is True


def test_hf_inference_client_sends_url_credentials_and_hides_them(server: str) -> None:
    SEEN_HEADERS.clear()
    host = server.removeprefix("http://")
    target = HFInferenceTarget(f"http://{host}/recorded/tgi_stream.sse?api_key=hf_SECRET")
    assert "SECRET" not in target.label
    assert one_step(target)["ok"] == 4
    assert SEEN_HEADERS and SEEN_HEADERS[0].get("Authorization") == "Bearer hf_SECRET"


def test_gemini_stream_shares_gaps_by_token_counts(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.genai", reason="the gemini extra is not installed")
    monkeypatch.setenv("LLMBENCH_TEST_GEMINI_KEY", "AIza-test-key")
    SEEN_HEADERS.clear()
    step = one_step(GeminiTarget("gemini_stream.sse", api_key_from("LLMBENCH_TEST_GEMINI_KEY"), f"{server}/gemini"))
    assert step["ok"] == 4
    assert step["output_tokens"]["mean"] == 11  # usageMetadata.candidatesTokenCount: 3 chunks, 11 tokens
    assert step["itl_s"]["count"] == 4 * 10
    assert SEEN_HEADERS and SEEN_HEADERS[0].get("x-goog-api-key") == "AIza-test-key"


@pytest.mark.parametrize(
    ("name", "kind"), [("gemini_error_400.json", "http_400"), ("gemini_error_429.json", "http_429")]
)
def test_gemini_errors(server: str, name: str, kind: str) -> None:
    pytest.importorskip("google.genai", reason="the gemini extra is not installed")
    step = one_step(GeminiTarget(name, None, f"{server}/gemini"))
    assert step["errors"] == {kind: 4}
