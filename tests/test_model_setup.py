"""One model set-up for every command: the same options, the same meaning, stored the same way."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import click
import pytest

from conftest import one_line_error, run_cli
from llmbench.cli._app import cli
from llmbench.errors import InvalidOptionError
from llmbench.harness import SETUP_FIELDS, ModelSetup, split_config
from llmbench.store import Store

DATA = Path(__file__).parent / "data"
MODEL_COMMANDS = ("run", "eval", "perplexity", "load")
SETUP_FLAGS = {"--backend", "--n-ctx", "--threads", "--device", "--dtype", "--option"}


def _options(command: str) -> dict[str, click.Option]:
    found = {}
    for param in cli.commands[command].params:
        if isinstance(param, click.Option):
            for name in param.opts:
                found[name] = param
    return found


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_the_same_setup_options(command: str) -> None:
    options = _options(command)
    assert set(options) >= SETUP_FLAGS, SETUP_FLAGS - set(options)
    reference = _options("run")
    for flag in SETUP_FLAGS:
        mine, theirs = options[flag], reference[flag]
        assert (mine.opts, mine.default, mine.help) == (theirs.opts, theirs.default, theirs.help), flag


def test_one_short_flag_means_one_thing_across_the_model_commands() -> None:
    meanings: dict[str, set[str]] = {}
    for name in MODEL_COMMANDS:
        for param in cli.commands[name].params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    if len(opt) == 2:
                        meanings.setdefault(opt, set()).add(str(param.name))
    assert {flag: names for flag, names in meanings.items() if len(names) > 1} == {}


def test_setup_round_trips_through_the_stored_form() -> None:
    setup = ModelSetup("m.gguf", "llama.cpp", 4096, 3, "cpu", "float32", {"flash_attn": True})
    stored = setup.to_json() | {"prompt_tokens": 12}
    assert set(setup.to_json()) == set(SETUP_FIELDS)
    again, rest = split_config(stored)
    assert again == setup and rest == {"prompt_tokens": 12}


@pytest.mark.parametrize(("field", "value"), [("n_ctx", 4), ("threads", 0)])
def test_bad_setup_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(InvalidOptionError):
        ModelSetup(**{field: value})  # type: ignore[arg-type]


def test_credentials_in_a_model_url_are_never_stored() -> None:
    setup = ModelSetup("http://user:SECRET@127.0.0.1:9/v1")
    assert "SECRET" not in str(setup.to_json())
    assert setup.model is not None and "SECRET" not in setup.model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_load_test_of_an_absent_server_fails_with_one_line() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code, _out, err = run_cli("load", url, "-c", "1,2", "--requests", "2", "-n", "4", "-p", "4")
    line = one_line_error(code, err, "cannot connect", "connect 2")
    assert "{" not in line  # error counts as "connect 2", not a dict's repr
    with Store() as store:  # stored as a failed run, with its cause
        (record,) = list(store.runs())
    assert record.status == "failed" and record.error is not None and "cannot connect" in record.error


SETUP_ARGS = ("--backend", "fake", "--threads", "3", "--device", "cpu", "--dtype", "float32", "--n-ctx", "512")


def _seen(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _expected(_: Path) -> dict[str, Any]:
    return {"n_ctx": 512, "threads": 3, "device": "cpu", "dtype": "float32", "options": {}}


@pytest.mark.parametrize(
    "command",
    [
        ("run", "-r", "1", "-w", "0", "-n", "4", "-p", "8"),
        ("eval", "--task", str(DATA / "bigbench" / "anachronisms"), "--limit", "3"),
        ("perplexity", "--text", str(Path(__file__)), "--window", "64", "--stride", "32"),
        ("load", "-c", "1", "--requests", "2", "-n", "4", "-p", "8"),
    ],
    ids=lambda command: command[0],
)
def test_setup_options_reach_the_backend_from_every_command(command: tuple[str, ...], tmp_path: Path) -> None:
    record_to = tmp_path / "seen.jsonl"
    code, _, err = run_cli(*command, *SETUP_ARGS, "-o", f"record_to={record_to}")
    assert code == 0, err
    assert _seen(record_to) == [_expected(record_to)]
    with Store() as store:
        (record,) = list(store.runs())
    assert record.status == "ok" and record.kind == {"run": "generate"}.get(command[0], command[0])
    assert {k: record.config[k] for k in ("n_ctx", "threads", "device", "dtype")} == {
        "n_ctx": 512,
        "threads": 3,
        "device": "cpu",
        "dtype": "float32",
    }
    assert "backend_libraries" in record.environment


def test_setup_settings_reach_the_backend_from_a_sweeps_run_and_load_steps(tmp_path: Path) -> None:
    record_to = tmp_path / "seen.jsonl"
    sweep = tmp_path / "s.yaml"
    common = (
        f"backends: [fake]\n  threads: 3\n  device: cpu\n  dtype: float32\n  n_ctx: 512\n"
        f"  max_new_tokens: 4\n  prompt_tokens: 8\n  repetitions: 1\n  options: {{record_to: '{record_to}'}}\n"
    )
    sweep.write_text(
        "models:\n"
        "  - default\n"
        "  - model: default\n"
        "    label: loaded\n"
        "    settings:\n"
        "      load: {concurrency: [1], requests: 2}\n"
        "backends: [fake]\n"
        "settings:\n" + "".join(f"  {line}\n" for line in common.splitlines()[1:])
    )
    code, _, err = run_cli("sweep", str(sweep))
    assert code == 0, err
    assert _seen(record_to) == [_expected(record_to)] * 2
    with Store() as store:
        kinds = sorted(record.kind for record in store.runs())
    assert kinds == ["generate", "load"]


def test_a_server_that_ignores_ignore_eos_is_measured_with_the_shortfall_stated() -> None:
    """Servers that stop at end-of-sequence whatever ``ignore_eos`` says (OpenAI, Ollama, TGI)."""
    from sse_server import EOS_AFTER, sse_server

    with sse_server() as url:
        args = ("-o", "model=m", "-p", "8", "-n", "16", "-r", "2", "-w", "0", "--format", "json")
        code, out, err = run_cli("run", f"{url}/ignores_eos", *args)
    assert code == 0, err
    document = json.loads(out)
    assert document["status"] == "ok"
    metrics = document["metrics"]
    assert metrics["summary"]["output_tokens"]["mean"] == EOS_AFTER  # what the server produced
    assert "ignores ignore_eos" in metrics["shortfall"] and "--allow-eos" in metrics["shortfall"]
    with Store() as store:
        (record,) = list(store.runs())
    assert record.result is not None and "--allow-eos" in str(record.result.shortfall)


@pytest.mark.parametrize("command", ["run", "load"])
def test_url_credentials_reach_the_server_and_nothing_else(command: str, tmp_path: Path) -> None:
    """``http://user:SECRET@host``: sent as Basic auth; absent from stdout, the store and all five reports."""
    import base64
    import sqlite3

    import sse_server

    with sse_server.sse_server() as url:
        secret_url = url.replace("http://", "http://user:pw-SECRET@") + "/ok"
        args = ("-c", "1", "--requests", "1") if command == "load" else ("-r", "1", "-w", "0", "-o", "model=m")
        code, out, err = run_cli(command, secret_url, *args, "-p", "8", "-n", "4", "--format", "json")
        assert code == 0, err
        token = base64.b64encode(b"user:pw-SECRET").decode()
        assert sse_server.SEEN_HEADERS[-1]["Authorization"] == f"Basic {token}"
    reports = [tmp_path / f"r.{ext}" for ext in ("html", "xlsx", "csv", "json", "md")]
    run_id = json.loads(out)["id"]
    code, _, err = run_cli("report", "--run", run_id, *(arg for path in reports for arg in ("--out", str(path))))
    assert code == 0, err
    from llmbench.paths import database_path

    with sqlite3.connect(database_path()) as db:
        stored = json.dumps(db.execute("SELECT * FROM runs").fetchall())
    for text in (out, err, stored, *(path.read_bytes().decode("latin-1") for path in reports)):
        assert "SECRET" not in text and token not in text
