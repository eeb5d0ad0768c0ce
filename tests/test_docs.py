"""The docs stay true: the CLI reference matches --help, the README's commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate_cli_docs.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [line.split()[0:2] for line in block] == [["make", "demo"], ["make", "test"]]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "torch==2.13.0" in makefile


def test_metric_names_in_docs_exist_in_the_code() -> None:
    from llmbench.measurement.metrics import GenerationMetrics

    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name in re.findall(r"`(\w+_s)`", doc):
        if name not in ("load_s", "ttft_s"):
            assert name in GenerationMetrics.__dataclass_fields__ or name == "decode_s", name


def test_example_sweep_files_validate() -> None:
    from llmbench.sweep import plan_sweep

    examples = sorted((ROOT / "docs" / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        assert plan_sweep(path).runs, path
