"""The wire layer against a misbehaving server of the tests' own (tests/sse_server.py): resends,
credentials, servers that take only strings or ignore ``ignore_eos``, from the load client and
the ``openai`` backend alike."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest

import sse_server
from llmbench.backends.base import GenerationConfig, LoadOptions
from llmbench.backends.openai import OpenAIBackend
from llmbench.errors import InvalidOptionError, ServerError
from llmbench.measurement.prompts import synthetic_prompt_ids
from llmbench.models import resolve_model
from llmbench.serving import OpenAITarget, RequestRecord, RequestSpec, StepPlan, closed_loop
from llmbench.transport import STALE


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with sse_server.sse_server() as url:
        yield url


@pytest.fixture(autouse=True)
def forget_requests() -> None:
    sse_server.HITS.clear()
    for seen in (sse_server.SEEN_HEADERS, sse_server.SEEN_BODIES, sse_server.SEEN_PATHS):
        seen.clear()


def send_all(target: OpenAITarget, n: int, concurrency: int = 1, text: str = "hello") -> list[RequestRecord]:
    spec = RequestSpec(text, None, None, 4, target.body(text, None, 4))

    async def go() -> list[RequestRecord]:
        await target.start()
        try:
            run = await closed_loop(target, [spec], concurrency, StepPlan(None, n))
        finally:
            await target.close()
        return list(run.records)

    return asyncio.run(go())


# -- resends -----------------------------------------------------------------------------------------


def test_a_request_the_server_read_is_not_sent_again(server: str) -> None:
    """The server reads each request and drops the connection: 6 sent, 6 received, 6 failures."""
    records = send_all(OpenAITarget(f"{server}/drop_after_read", pool_size=2, keepalive=True), 6, concurrency=2)
    assert sse_server.HITS["drop_after_read"] == 6
    assert [(r.error, r.attempts, r.retry_reason) for r in records] == [("disconnect", 1, None)] * 6


def test_retries_are_resends_the_user_asked_for_and_each_is_counted(server: str) -> None:
    records = send_all(OpenAITarget(f"{server}/drop_after_read", retries=2, keepalive=True), 3)
    assert sse_server.HITS["drop_after_read"] == 9
    assert [(r.error, r.attempts, r.retry_reason) for r in records] == [("disconnect", 3, "disconnect")] * 3


def test_a_keepalive_connection_closed_before_the_request_is_resent_and_reported(server: str) -> None:
    """The server closes each connection after its answer without saying so; reusing it anyway
    (``keepalive=True``), the next request finds it closed before it could be written, goes on a
    new connection, and says so."""
    records = send_all(OpenAITarget(f"{server}/close_after", keepalive=True), 12)
    ok = [record for record in records if record.ok]
    assert sse_server.HITS["close_after"] == len(ok)  # every answered request reached the server once
    assert any(record.retry_reason == STALE for record in ok)
    assert all(record.attempts == 1 or record.retry_reason == STALE for record in records)
    # When the close is only seen after the request was written (a reset), it is not sent again.
    assert all(record.error == "disconnect" and record.attempts == 1 for record in records if not record.ok)


def test_a_server_that_closes_connections_gets_a_new_one_per_request(server: str) -> None:
    """Found out with one request before the step (llama-server's habit): then nothing is resent."""
    target = OpenAITarget(f"{server}/close_after", pool_size=2)
    records = send_all(target, 6, concurrency=2)
    assert target.server_closes_connections is True and target.keepalive is False
    assert [(r.error, r.attempts) for r in records] == [(None, 1)] * 6
    assert sse_server.HITS["close_after"] == 7  # the probe and the step's six
    keeps = OpenAITarget(f"{server}/ok")
    send_all(keeps, 2)
    assert keeps.server_closes_connections is False and keeps.keepalive is True


def test_an_http_error_is_never_resent(server: str) -> None:
    records = send_all(OpenAITarget(f"{server}/http500", retries=3, keepalive=True), 2)
    assert sse_server.HITS["http500"] == 2 and all(r.error == "http_500" and r.attempts == 1 for r in records)


# -- credentials -------------------------------------------------------------------------------------


def test_url_credentials_become_the_header_and_never_show(server: str) -> None:
    host = server.removeprefix("http://")
    target = OpenAITarget(f"http://user:pw-SECRET@{host}/echo_key", keepalive=True)
    assert "SECRET" not in target.label and target.label == f"{server}/echo_key"
    (record,) = send_all(target, 1)
    token = base64.b64encode(b"user:pw-SECRET").decode()
    assert sse_server.SEEN_HEADERS[0]["Authorization"] == f"Basic {token}"
    assert record.error == "http_401" and record.detail is not None
    assert token not in record.detail and "SECRET" not in record.detail and "***" in record.detail


def test_a_key_in_the_query_is_sent_as_a_bearer_key(server: str) -> None:
    target = OpenAITarget(f"{server}/ok?api_key=sk-SECRET&x=1", keepalive=True)
    (record,) = send_all(target, 1)
    assert record.ok
    assert sse_server.SEEN_HEADERS[0]["Authorization"] == "Bearer sk-SECRET"
    assert "SECRET" not in sse_server.SEEN_PATHS[0] and "SECRET" not in target.label


def test_the_backend_sends_url_credentials_as_basic_and_redacts_the_echo(server: str) -> None:
    host = server.removeprefix("http://")
    model = resolve_model(f"http://user:pw-SECRET@{host}/echo_key", allow_server=True)
    with OpenAIBackend(model, LoadOptions(extra={"model": "m", "keepalive": True})) as backend:
        assert "SECRET" not in backend.root
        with pytest.raises(ServerError) as raised:
            backend.generate("hello", GenerationConfig(max_new_tokens=4))
    token = base64.b64encode(b"user:pw-SECRET").decode()
    assert sse_server.SEEN_HEADERS[-1]["Authorization"] == f"Basic {token}"
    assert "HTTP 401" in str(raised.value) and token not in str(raised.value) and "SECRET" not in str(raised.value)


# -- the openai backend ------------------------------------------------------------------------------


def backend_at(url: str, **options: Any) -> OpenAIBackend:
    """The backend on ``url``; connections kept (no probe request) unless ``keepalive="auto"``."""
    options = {"keepalive": True, **options}
    return OpenAIBackend(resolve_model(url, allow_server=True), LoadOptions(extra=options))


def test_token_id_prompts_go_as_text_by_default(server: str) -> None:
    """A server that refuses token ids (HTTP 500, as llama-cpp-python's does) gets the prompt as
    text whose length the server itself counted."""
    with backend_at(f"{server}/strings_only") as backend:
        ids = synthetic_prompt_ids(backend, 24)
        generation = backend.generate(ids, GenerationConfig(max_new_tokens=8, force_new_tokens=True))
        notes = backend.prompt_notes
    assert generation.output_tokens == 8 and generation.prompt_tokens == 24
    assert notes == {
        "prompt_format": "text", "requested_prompt_tokens": 24, "server_prompt_tokens": 24, "calibration_requests": 1,
    }  # fmt: skip
    assert isinstance(sse_server.SEEN_BODIES[-1]["prompt"], str) and sse_server.SEEN_BODIES[-1]["ignore_eos"] is True


def test_ids_only_when_asked_and_a_refusal_says_so(server: str) -> None:
    with backend_at(f"{server}/strings_only", prompt_format="ids") as backend:
        ids = backend.tokenize("hello world")
        with pytest.raises(ServerError) as raised:
            backend.generate(ids, GenerationConfig(max_new_tokens=4))
    assert "HTTP 500" in raised.value.message and "prompt_format" in (raised.value.hint or "")
    with backend_at(f"{server}/ok", prompt_format="ids") as backend:
        generation = backend.generate([104, 105], GenerationConfig(max_new_tokens=4))
        assert sse_server.SEEN_BODIES[-1]["prompt"] == [104, 105] and generation.prompt_tokens == 2
        assert backend.prompt_notes == {"prompt_format": "ids"}


def test_a_tokenized_text_prompt_is_sent_as_the_text(server: str) -> None:
    with backend_at(f"{server}/ok", model="m") as backend:
        backend.generate(backend.tokenize("Once upon a time"), GenerationConfig(max_new_tokens=4))
    assert sse_server.SEEN_BODIES[-1]["prompt"] == "Once upon a time"
    assert sse_server.SEEN_BODIES[-1]["model"] == "m" and sse_server.HITS["ok"] == 1  # no calibration needed


def test_a_server_that_ignores_ignore_eos_is_reported_as_it_answered(server: str) -> None:
    with backend_at(f"{server}/ignores_eos") as backend:
        generation = backend.generate("hello", GenerationConfig(max_new_tokens=16, force_new_tokens=True))
        finish = backend.generate_tokens([104], GenerationConfig(max_new_tokens=16, force_new_tokens=True), print)
    assert generation.output_tokens == sse_server.EOS_AFTER and generation.finish_reason == "stop"
    assert len(generation.token_times) == sse_server.EOS_AFTER and finish == "stop"
    assert sse_server.SEEN_BODIES[0]["ignore_eos"] is True


def test_a_stream_without_usage_takes_the_servers_own_count(server: str) -> None:
    with backend_at(f"{server}/no_usage") as backend:
        generation = backend.generate("hello there", GenerationConfig(max_new_tokens=6, force_new_tokens=True))
    assert generation.output_tokens == 6 and generation.prompt_tokens == len("hello there")


def test_the_backend_resends_only_when_asked(server: str) -> None:
    for retries, hits in ((0, 1), (2, 3)):
        sse_server.HITS.clear()
        with backend_at(f"{server}/drop_after_read", model="m", retries=retries) as backend:
            with pytest.raises(ServerError, match="failed"):
                backend.generate("hello", GenerationConfig(max_new_tokens=4))
            assert backend.attempts == hits and sse_server.HITS["drop_after_read"] == hits
            assert backend.http.resends == ({"disconnect": retries} if retries else {})


def test_the_backend_finds_out_whether_the_server_keeps_connections(server: str) -> None:
    with backend_at(f"{server}/close_after", model="m", keepalive="auto") as backend:
        assert backend.keepalive is False and sse_server.HITS["close_after"] == 1  # the probe
        for _ in range(3):
            assert backend.generate("hello", GenerationConfig(max_new_tokens=4)).output_tokens == 4
        assert backend.attempts == 4 and backend.http.resends == {}
    with backend_at(f"{server}/ok", model="m", keepalive="auto") as backend:
        assert backend.keepalive is True


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"prompt_format": "tokens"}, "prompt_format"), ({"retries": "-1"}, "retries"), ({"timeout_s": "0"}, "timeout_s"),
     ({"cache_prompt": "maybe"}, "cache_prompt"), ({"keepalive": "sometimes"}, "keepalive")],
)  # fmt: skip
def test_bad_option_values_are_refused(server: str, options: dict[str, str], needle: str) -> None:
    with pytest.raises(InvalidOptionError, match=needle):
        backend_at(f"{server}/ok", model="m", **options)


def test_an_unknown_option_names_the_nearest(server: str) -> None:
    with pytest.raises(InvalidOptionError) as raised:
        backend_at(f"{server}/ok", model="m", tokeniser="x.gguf")
    assert "tokeniser" in raised.value.message and "tokenizer" in (raised.value.hint or "")
