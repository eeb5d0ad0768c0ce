"""Writing a report: the format follows the output file's extension."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from llmbench.errors import LLMBenchError
from llmbench.reports._excel import write_excel
from llmbench.reports._html import write_html
from llmbench.reports._rows import ReportRun
from llmbench.reports._text import write_csv, write_json, write_markdown

WRITERS: dict[str, Callable[[Sequence[ReportRun], Path], None]] = {
    ".xlsx": write_excel,
    ".csv": write_csv,
    ".json": write_json,
    ".md": write_markdown,
    ".html": write_html,
}


def write_report(runs: Sequence[ReportRun], path: str | Path) -> Path:
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise LLMBenchError(
            f"cannot tell the report format of {path.name}", f"end the file name with {', '.join(WRITERS)}"
        )
    if not path.parent.is_dir():
        raise LLMBenchError(f"folder {path.parent} does not exist", "create it or choose another --out")
    try:
        writer(runs, path)
    except PermissionError:
        raise LLMBenchError(f"cannot write {path}", "choose a writable --out path") from None
    return path
