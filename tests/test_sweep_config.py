"""Sweep files: validation errors as one line (file, line, key, hint), and the expansion into runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import one_line_error, run_cli
from llmbench.sweep import ConfigError, PlannedRun, expand, load_sweep_file, plan_sweep


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def planned(tmp_path: Path, text: str) -> list[PlannedRun]:
    return plan_sweep(write(tmp_path, text)).runs


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("models: [default]\nsettings:\n  thread: 2\n", ["sweep.yaml:3", "settings.thread", "did you mean 'threads'?"]),
        ("models: [default]\nbackend: [fake]\n", ["sweep.yaml:2", "'backend'", "did you mean 'backends'?"]),
        ("models:\n  - model: default\n    labl: x\n", ["sweep.yaml:3", "models.0.labl", "did you mean 'label'?"]),
        ("models: [default]\nsettings:\n  repetitions: 0\n", ["sweep.yaml:3", "settings.repetitions", "greater than"]),
        ("models: [default]\nsettings: {n_ctx: [512, many]}\n", ["sweep.yaml:2", "settings.n_ctx", "'many'"]),
        ("settings: {threads: 1}\n", ["'models' is required"]),
        ("models: [default\n", ["sweep.yaml:2", "fix the YAML syntax"]),
        ("- just\n- a list\n", ["expected a mapping"]),
        ("models: [default]\nmemory_limit: lots\n", ["sweep.yaml:2", "memory_limit", "cannot read size"]),
        ("models: [default]\nexecutor: slurm\n", ["executor must be local, ray or ray:ADDRESS"]),
        ("models: [default]\nbackends: [llama_cp]\n", ["unknown backend 'llama_cp'", "did you mean"]),
        ("models: [default]\nsettings: {options: {flash_atn: true}}\n", ["'flash_atn'", "did you mean 'flash_attn'?"]),
        ("models: [default]\nexclude: [{thread: 2}]\n", ["exclude[0]", "'thread'", "did you mean 'threads'?"]),
        ("models: [default]\nsettings: {max_new_tokens: 4000, n_ctx: 512}\n", ["exceed n_ctx"]),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = write(tmp_path, text)
    code, _, err = run_cli("sweep", str(path), "--dry-run")
    one_line_error(code, err, *needles)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli("sweep", str(tmp_path / "nope.yaml"))
    one_line_error(code, err, "does not exist")


def test_lists_expand_as_a_product_with_exclusions(tmp_path: Path) -> None:
    runs = planned(
        tmp_path,
        "models: [default]\nbackends: [fake, llama.cpp]\n"
        "settings: {threads: [1, 2], max_new_tokens: [8, 16], repetitions: 2}\n"
        "exclude:\n  - {backend: fake, threads: 2}\n  - {model: default, backend: llama.cpp, max_new_tokens: 16, threads: 1}\n",
    )
    described = [run.describe() for run in runs]
    assert len(runs) == 2 * 2 * 2 - 2 - 1
    assert all("repetitions" not in text for text in described)  # one value: not a varying choice
    assert not any("fake" in text and "threads=2" in text for text in described)
    assert all(run.config["repetitions"] == 2 for run in runs)
    assert len({run.key for run in runs}) == len(runs)


def test_backend_settings_go_to_the_backends_that_take_them(tmp_path: Path) -> None:
    runs = planned(
        tmp_path,
        "models: [default]\nbackends: [llama.cpp, transformers]\n"
        "settings: {n_gpu_layers: [0, 4], attn_implementation: [eager, sdpa], max_new_tokens: 4}\n",
    )
    by_backend: dict[str, list[PlannedRun]] = {}
    for run in runs:
        by_backend.setdefault(run.backend, []).append(run)
    assert sorted(r.config["options"]["n_gpu_layers"] for r in by_backend["llama.cpp"]) == [0, 4]
    assert sorted(r.config["options"]["attn_implementation"] for r in by_backend["transformers"]) == ["eager", "sdpa"]
    assert all("attn_implementation" not in r.config["options"] for r in by_backend["llama.cpp"])


def test_per_model_overrides_and_labels(tmp_path: Path) -> None:
    runs = planned(
        tmp_path,
        "models:\n  - default\n  - model: default\n    label: long-prompt\n    backends: [fake]\n"
        "    settings: {prompt_tokens: 512, options: {prefill_delay: 0.01}}\n"
        "backends: [fake]\nsettings: {prompt_tokens: 64, max_new_tokens: 4}\n",
    )
    assert [(run.label, run.config["prompt_tokens"]) for run in runs] == [
        ("SmolLM2-135M-Instruct", 64),
        ("long-prompt", 512),
    ]
    assert runs[1].config["options"] == {"prefill_delay": 0.01}


def test_keys_are_stable_and_follow_the_config(tmp_path: Path) -> None:
    text = "models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: [4, 8]}\n"
    first = [run.key for run in planned(tmp_path, text)]
    again = [run.key for run in plan_sweep(write(tmp_path, "# a comment\n" + text, "other.yaml")).runs]
    assert first == again
    changed = [run.key for run in planned(tmp_path, text.replace("[4, 8]", "[4, 9]"))]
    assert changed[0] == first[0] and changed[1] != first[1]


def test_same_file_same_sweep_id_and_fresh_gives_a_new_one(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [default]\nbackends: [fake]\n")
    assert plan_sweep(path).id == plan_sweep(path).id
    assert plan_sweep(path, fresh=True).id != plan_sweep(path).id


def test_relative_model_paths_resolve_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "m.gguf"
    model.write_bytes(b"")
    sweep, _ = load_sweep_file(write(tmp_path, "models: [models/m.gguf]\nbackends: [fake]\n"))
    (run,) = expand(sweep, tmp_path)
    assert run.model == str(model.resolve()) and run.label == "m"


def test_api_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_sweep_file(write(tmp_path, "models: [default]\nsetings: {}\n"))


def test_dry_run_lists_the_plan(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: [4, 8]}\n")
    code, out, err = run_cli("sweep", str(path), "--dry-run")
    assert code == 0, err
    assert "2 run(s), 2 to run" in out and "max_new_tokens=8" in out


def bomb(width: int, depth: int) -> str:
    """A "billion laughs" sweep file: each anchored list holds ``width`` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join([*lines, f"models: *l{depth - 1}"]) + "\n"


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        plan_sweep(write(tmp_path, text))
    return str(info.value)


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    text = bomb(9, 9)  # 9^9 = 387 million strings from 560 bytes
    assert len(text) < 600
    message = config_error(tmp_path, text)
    assert "expand to more than 100,000 values" in message and len(message) < 300
    assert "contains it" in config_error(tmp_path, "models: &a [default, *a]\n")


def test_echoed_values_are_cut_short(tmp_path: Path) -> None:
    long, key = "x" * 100_000, "x" * 1000  # YAML keys stop at 1024 characters
    for text in (
        f"models: [default]\nsettings: {{threads: {long}}}\n",
        f"models: [default]\nmemory_limit: '{long}'\n",
        f"models: [default]\nbackends: [fake]\nsettings: {{options: {{{key}: 1}}}}\n",
        f"models: [default]\nexclude: [{{{key}: 1}}]\n",
        f"models: [default]\nsettings: {{{key}: 1}}\n",
    ):
        message = config_error(tmp_path, text)
        assert len(message) < 400 and "xxx..." in message, message[:500]


@pytest.mark.parametrize(
    ("lists", "count"),
    [
        ({"max_new_tokens": 1000, "prompt_tokens": 1000}, "1,000,000"),
        (dict.fromkeys(["max_new_tokens", "prompt_tokens", "threads", "seed"], 100), "100,000,000"),
    ],
)
def test_plans_over_the_limit_are_refused_before_they_expand(tmp_path: Path, lists: dict[str, int], count: str) -> None:
    axes = ", ".join(f"{name}: {list(range(1, n + 1))}" for name, n in lists.items())
    message = config_error(tmp_path, f"models: [default]\nbackends: [fake]\nsettings: {{{axes}}}\n")
    assert f"expands to {count} runs" in message and "10,000" in message


def test_a_plan_at_the_limit_is_kept(tmp_path: Path) -> None:
    runs = planned(
        tmp_path,
        f"models: [default]\nbackends: [fake]\nsettings: {{max_new_tokens: {list(range(1, 101))}, prompt_tokens: {list(range(1, 101))}}}\n",
    )
    assert len(runs) == 10_000


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("models: [default]\nModels: 1\n", ["sweep.yaml:2", "unknown key 'Models'", "did you mean 'models'?"]),
        ("models: [default]\nsettings: {Threads: 2}\n", ["unknown key 'settings.Threads'", "did you mean 'threads'?"]),
        ("models: [{model: default, Label: x}]\n", ["unknown key 'models.0.Label'", "did you mean 'label'?"]),
        ("models: !!float abc\n", ["sweep.yaml:1", "cannot read 'abc' as float"]),
        ("models: !!timestamp abc\n", ["cannot read 'abc' as timestamp"]),
        ("models: " + "[" * 500 + "default" + "]" * 500 + "\n", ["nested more than 32 levels deep"]),
        (
            "models:\n" + "".join("  " * i + "-\n" for i in range(1, 500)) + "  " * 500 + "- default\n",
            ["nested more than"],
        ),
        ("models: [default]\nmemory_limit: -1\n", ["memory_limit", "between 1MiB and 1PiB"]),
        ("models: [default]\nmemory_limit: 0B\n", ["memory_limit", "between 1MiB and 1PiB"]),
        ("models: [default]\nmemory_limit: true\n", ["memory_limit", "4GiB"]),
        ("models: [default]\nmemory_limit: 1.0e+40\n", ["memory_limit", "4GiB"]),
        ("models: [default]\nmemory_limit: 99999999999999TB\n", ["memory_limit", "between 1MiB and 1PiB"]),
        ("models: [default]\nmemory_limit: '" + "9" * 400 + "'\n", ["memory_limit", "cannot read size"]),
        ("models: [default]\ntimeout_s: 1.0e-300\n", ["timeout_s", "greater than or equal to 1"]),
        ("models: [default]\ntimeout_s: 1e-300\n", ["timeout_s", "valid number"]),
        ("models: [default]\ntimeout_s: true\n", ["timeout_s", "valid number"]),
        ("models: [default]\ntimeout_s: .inf\n", ["timeout_s", "finite"]),
        ("models: [default]\nsettings: {threads: true}\n", ["settings.threads", "valid integer"]),
        ("models: [default]\nsettings: {prompt_tokens: []}\n", ["settings.prompt_tokens", "at least 1 item"]),
        (
            "models: [default]\nsettings: {options: {prefill_delay: []}}\n",
            ["settings.options.prefill_delay", "at least 1"],
        ),
        ("models: [default]\nbackends: []\n", ["backends", "at least 1 item"]),
    ],
)
def test_more_bad_files_are_config_errors(tmp_path: Path, text: str, needles: list[str]) -> None:
    message = config_error(tmp_path, text)
    for needle in needles:
        assert needle in message, message


def test_one_line_on_the_command_line(tmp_path: Path) -> None:
    code, _, err = run_cli("sweep", str(write(tmp_path, bomb(9, 9))), "--dry-run")
    assert len(one_line_error(code, err, "aliases expand")) < 300
    code, _, err = run_cli("sweep", str(write(tmp_path, "models: [default]\nModels: 1\n")), "--dry-run")
    one_line_error(code, err, "unknown key 'Models'")


def test_a_model_name_too_long_for_a_path_is_planned(tmp_path: Path) -> None:
    name = "x" * 300  # more than a file name may hold (ENAMETOOLONG): no such file, so a Hub id or a later error
    (run,) = planned(tmp_path, f"models: [{name}, '{name}/{name}']\nbackends: [fake]\n")[:1]
    assert run.model == name and run.label == name


def test_the_same_run_under_two_labels_is_refused(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, "models:\n  - {model: default, label: first}\n  - {model: default, label: second}\nbackends: [fake]\n"
    )
    assert "'first' and 'second' give the same run" in message
    runs = planned(tmp_path, "models: [default, default]\nbackends: [fake]\n")  # one label: the same entry twice
    assert len(runs) == 1


def test_a_sweep_whose_every_run_is_excluded_is_refused(tmp_path: Path) -> None:
    assert "every run of the sweep is excluded" in config_error(
        tmp_path, "models: [default]\nbackends: [fake]\nexclude: [{backend: fake}]\n"
    )


def test_memory_limit_forms_that_stay_valid(tmp_path: Path) -> None:
    for value, size in (("4GiB", 4 << 30), ("500MB", 500 * 10**6), (1 << 20, 1 << 20)):
        sweep, _ = load_sweep_file(write(tmp_path, f"models: [default]\nmemory_limit: {value}\n"))
        assert sweep.memory_limit == value and sweep.memory_limit_bytes() == size


def test_sweep_ids_leave_defaults_out() -> None:
    """A sweep's id (what resuming it finds its runs by) depends on what the file says, not on the
    fields this version knows: a field added later with a default (``embed``, ``load``) leaves the
    ids of existing files alone, and writing a default out changes nothing."""
    from llmbench.sweep._config import SweepFile
    from llmbench.sweep._plan import sweep_id

    plain = SweepFile.model_validate({"models": ["default"], "settings": {"threads": 2}})
    spelled = SweepFile.model_validate(
        {"models": ["default"], "settings": {"threads": 2, "embed": None, "load": None}, "timeout_s": 1800.0}
    )
    assert sweep_id(plain) == sweep_id(spelled) == "cc446c9dbe50"


def test_an_entrys_sections_merge_with_the_sweeps_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "models:\n  - {model: default, settings: {embed: {seq_lengths: [8]}, load: {requests: 4}}}\n"
        "settings: {embed: {batch_sizes: [2]}, load: {concurrency: [1, 2], requests: 9}}\n"
    )
    sweep, _ = load_sweep_file(path)
    (run,) = [run for run in expand(sweep, tmp_path) if run.kind == "load"]
    assert run.config["embed"] == {"batch_sizes": [2], "seq_lengths": [8]}
    assert run.config["load"]["concurrency"] == [1, 2] and run.config["load"]["requests"] == 4
