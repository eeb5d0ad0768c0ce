"""Thousands of generated bad inputs through the CLI; how each ended, counted.

    .venv/bin/python benchmarks/fuzz.py                      # 5,400 cases (12x the test suite's 450)
    .venv/bin/python benchmarks/fuzz.py --scale 40 --target sweep --target gguf

The generators and the checks are those of ``tests/test_fuzz_inputs.py`` (sweep files, ``-o``
option strings, corrupt GGUF files, config.json garbage), run with ``--scale`` times the test
suite's number of cases. A case that breaks a promise (an exit code other than 0 or 2, a
traceback, more than one stderr line or one over 500 characters, a changed store) is counted
under "other" and the first few are printed; the exit status is 1 if there is any.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=12, help="Times the test suite's cases (default 12).")
    parser.add_argument("--target", action="append", choices=["sweep", "options", "gguf", "config"])
    parser.add_argument("--show", type=int, default=5, help="Failing cases to print (default 5).")
    args = parser.parse_args()

    os.environ["LLMBENCH_FUZZ_SCALE"] = str(args.scale)  # read when the module is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(ROOT / "tests"))
    import test_fuzz_inputs as fuzz
    from llmbench.models._gguf import read_gguf_header

    fuzz.prepare()
    scratch = Path(tempfile.mkdtemp(prefix="llmbench-fuzz-"))
    try:
        sample = fuzz.tiny_gguf(scratch / "tiny.gguf")
        for folder in ("home", "run-home"):
            (scratch / folder).mkdir()
        fixtures = {
            "home": fuzz.Home(scratch / "home"),
            "run_home": fuzz.Home(scratch / "run-home"),
            "scratch": scratch,
            "gguf_sample": (sample.read_bytes(), read_gguf_header(sample).data_offset),
        }
        print(f"{'target':<8} {'tried':>6} {'exit 0':>7} {'exit 2':>7} {'other':>6} {'seconds':>8}")
        totals: Counter[str] = Counter()
        failures = []
        for name in args.target or list(fuzz.TARGETS):
            fuzz.COLLECTED = []
            test = fuzz.TARGETS[name]
            wanted = {key: value for key, value in fixtures.items() if key in inspect.signature(test).parameters}
            started = time.perf_counter()
            test(**wanted)
            elapsed = time.perf_counter() - started
            counts = Counter("other" if found else f"exit {outcome.code}" for _, outcome, found in fuzz.COLLECTED)
            failures += [(name, outcome, found) for _, outcome, found in fuzz.COLLECTED if found]
            tried = len(fuzz.COLLECTED)
            totals.update(counts, tried=tried)
            print(
                f"{name:<8} {tried:>6} {counts['exit 0']:>7} {counts['exit 2']:>7} {counts['other']:>6} {elapsed:>8.1f}"
            )
        print(f"{'all':<8} {totals['tried']:>6} {totals['exit 0']:>7} {totals['exit 2']:>7} {totals['other']:>6}")
        for name, outcome, found in failures[: args.show]:
            shown = " ".join(arg[:120] for arg in outcome.args)
            print(f"\n[{name}] llmbench {shown}\n  {', '.join(found)}\n  {outcome.stderr.strip()[:600]}")
        return 1 if failures else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
