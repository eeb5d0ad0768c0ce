"""The libraries reports are written with: dependencies of llmbench itself, not extras."""

from __future__ import annotations

from typing import Any

from llmbench.errors import LLMBenchError


def missing_dependency(package: str) -> LLMBenchError:
    """A dependency of llmbench that is missing: the install is broken, no extra brings it."""
    return LLMBenchError(
        f"{package} is not installed, and llmbench needs it to write reports",
        f"install it with: pip install {package} (or reinstall llmbench)",
    )


def import_plotly_io() -> Any:
    try:
        import plotly.io
    except ImportError:
        raise missing_dependency("plotly") from None
    return plotly.io


def import_workbook() -> Any:
    """openpyxl's ``Workbook`` class."""
    try:
        from openpyxl import Workbook
    except ImportError:
        raise missing_dependency("openpyxl") from None
    return Workbook
