"""The wire layer without a server: request bodies, credentials, the retry rule, prompt calibration, layering."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.transport import (
    STALE,
    STALE_RESENDS,
    Credential,
    Sampling,
    api_key_from,
    calibrate_prompt,
    check_retries,
    count_body,
    encode,
    may_resend,
    openai_body,
    prompt_format,
    redact,
    split_credentials,
    tgi_body,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "llmbench"


# -- bodies -----------------------------------------------------------------------------------------


def test_completion_body_text_ids_and_settings() -> None:
    sampling = Sampling(max_tokens=8, temperature=0.5, top_p=0.9, top_k=4, seed=3, ignore_eos=True)
    body = openai_body("hi", sampling, model="m", extra={"cache_prompt": False})
    assert body == {
        "max_tokens": 8, "temperature": 0.5, "stream": True, "stream_options": {"include_usage": True},
        "top_p": 0.9, "top_k": 4, "seed": 3, "ignore_eos": True, "model": "m", "prompt": "hi", "cache_prompt": False,
    }  # fmt: skip
    assert openai_body((1, 2), Sampling(max_tokens=1, ignore_eos=False))["prompt"] == [1, 2]
    assert "ignore_eos" not in openai_body("x", Sampling(max_tokens=1, ignore_eos=False))
    assert json.loads(encode(body)) == body


def test_chat_body_takes_text_or_messages_never_ids() -> None:
    body = openai_body("hello", Sampling(max_tokens=4), endpoint="chat")
    assert body["messages"] == [{"role": "user", "content": "hello"}] and "prompt" not in body
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert openai_body(None, Sampling(max_tokens=4), endpoint="chat", messages=messages)["messages"] == messages
    with pytest.raises(InvalidOptionError):
        openai_body([1, 2], Sampling(max_tokens=4), endpoint="chat")


def test_count_and_tgi_bodies() -> None:
    body = count_body("abc", model="m")
    assert body["max_tokens"] == 1 and body["stream"] is False and body["prompt"] == "abc"
    assert "stream_options" not in body and "ignore_eos" not in body
    assert tgi_body("abc", 5, {"seed": 1}) == {
        "inputs": "abc", "parameters": {"max_new_tokens": 5, "do_sample": False, "details": True, "seed": 1}
    }  # fmt: skip


def test_prompt_format_is_checked() -> None:
    assert prompt_format("TEXT") == "text" and prompt_format("ids") == "ids"
    with pytest.raises(InvalidOptionError, match="text or ids"):
        prompt_format("tokens")


# -- credentials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "clean", "scheme", "secret"),
    [
        ("http://user:s3cret@host:8000/v1", "http://host:8000/v1", "Basic", "user:s3cret"),
        ("https://sk-KEY@host/v1", "https://host/v1", "Bearer", "sk-KEY"),
        ("http://host/v1?api_key=KEY1&x=2", "http://host/v1?x=2", "Bearer", "KEY1"),
        ("http://host/?key=K&access_token=T", "http://host/", "Bearer", "K"),
        ("http://host/?Token=T", "http://host/", "Bearer", "T"),
        ("http://us%40er:p%3Ass@host", "http://host", "Basic", "us@er:p:ss"),
        ("http://host:8080/v1?x=1", "http://host:8080/v1?x=1", None, None),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", None, None),
    ],
)
def test_split_credentials(url: str, clean: str, scheme: str | None, secret: str | None) -> None:
    stripped, credential = split_credentials(url)
    assert stripped == clean
    if scheme is None:
        assert credential is None
    else:
        assert credential is not None and credential.scheme == scheme and credential.secret == secret
        assert secret not in repr(credential)


def test_credential_headers_and_redaction() -> None:
    basic = Credential.basic("user", "pa ss")
    token = base64.b64encode(b"user:pa ss").decode()
    assert basic.header() == {"Authorization": f"Basic {token}"}
    assert Credential.bearer("sk-1").header() == {"Authorization": "Bearer sk-1"}
    echoed = f"401: bad credentials Basic {token} for user:pa ss (pa%20ss)"
    shown = redact(echoed, basic.secrets)
    assert token not in shown and "pa ss" not in shown and "pa%20ss" not in shown and "***" in shown
    assert redact("nothing here", ["sk-1", None]) == "nothing here"


def test_api_key_comes_only_from_a_set_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMBENCH_TEST_KEY", "k")
    assert api_key_from("LLMBENCH_TEST_KEY") == "k" and api_key_from(None) is None
    monkeypatch.delenv("LLMBENCH_TEST_KEY")
    with pytest.raises(LLMBenchError, match="LLMBENCH_TEST_KEY is not set"):
        api_key_from("LLMBENCH_TEST_KEY")


# -- the retry rule ---------------------------------------------------------------------------------


def test_a_request_the_server_may_have_seen_is_resent_only_when_allowed() -> None:
    assert not may_resend("disconnect", resent=0, stale=0, retries=0)
    assert may_resend("disconnect", resent=1, stale=0, retries=2) and not may_resend("disconnect", 2, 0, 2)
    assert may_resend(STALE, resent=0, stale=STALE_RESENDS - 1, retries=0)
    assert not may_resend(STALE, resent=0, stale=STALE_RESENDS, retries=5)
    assert check_retries("2") == 2 and check_retries(0) == 0
    for bad in (-1, "x", True, "1.5"):
        with pytest.raises(InvalidOptionError, match="retries"):
            check_retries(bad)


# -- calibration ------------------------------------------------------------------------------------


class CharTokenizer:
    """One token per character (its code point); ``bos`` is prepended with special tokens."""

    def __init__(self, bos: int | None = None) -> None:
        self.bos = bos

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        prefix = [self.bos] if add_special_tokens and self.bos is not None else []
        return prefix + [ord(c) for c in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids if t != self.bos)


def test_calibration_takes_one_request_when_the_server_agrees() -> None:
    tokenizer = CharTokenizer(bos=1)
    ids = tokenizer.tokenize("hello world")  # 12 ids with the BOS
    seen: list[str] = []

    def server(text: str) -> int:  # adds its own BOS, as llama.cpp does
        seen.append(text)
        return len(text) + 1

    prompt = calibrate_prompt(server, tokenizer, ids)
    assert prompt.text == "hello world" and prompt.server_tokens == 12 and prompt.exact and prompt.tries == 1
    assert seen == ["hello world"]


def test_calibration_cuts_or_extends_until_the_server_counts_the_target() -> None:
    tokenizer = CharTokenizer()
    ids = tokenizer.tokenize("abcdefgh")
    # A server whose tokenizer merges pairs of letters: half the count, at least one.
    prompt = calibrate_prompt(lambda text: max(1, (len(text) + 1) // 2), tokenizer, ids)
    assert prompt.exact and prompt.server_tokens == 8 and len(prompt.text) in (15, 16)
    assert prompt.text.startswith("abcdefgh")  # extended by repeating the prompt's own tokens
    # A server that counts three more (a template around the text): the text is cut.
    prompt = calibrate_prompt(lambda text: len(text) + 3, tokenizer, ids)
    assert prompt.exact and prompt.text == "abcde"


def test_calibration_is_bounded_and_returns_the_closest() -> None:
    tokenizer = CharTokenizer()
    ids = tokenizer.tokenize("abcdefghij")
    calls: list[str] = []

    def odd_only(text: str) -> int:  # counts jump over every even length
        calls.append(text)
        return len(text) | 1

    prompt = calibrate_prompt(odd_only, tokenizer, ids, tries=4)
    assert not prompt.exact and abs(prompt.server_tokens - 10) == 1 and 1 <= len(calls) <= 4
    with pytest.raises(InvalidOptionError):
        calibrate_prompt(odd_only, tokenizer, [])


# -- layering ---------------------------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_transport_stays_on_its_floor_and_the_backend_does_not_import_serving() -> None:
    allowed = ("llmbench.errors", "llmbench.paths", "llmbench.measurement", "llmbench.models", "llmbench.transport")
    for path in (SRC / "transport").glob("*.py"):
        for module in _imported_modules(path):
            if module.startswith("llmbench"):
                assert module.startswith(allowed), f"{path.name} imports {module}"
    backend = _imported_modules(SRC / "backends" / "openai.py")
    assert not any(module.startswith("llmbench.serving") for module in backend), backend
    assert "llmbench.serving" not in (SRC / "backends" / "openai.py").read_text()


def test_importing_transport_loads_no_http_client() -> None:
    code = "import sys, llmbench.transport; print(sorted(m for m in ('httpx', 'aiohttp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
