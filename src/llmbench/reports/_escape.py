"""Store text made safe for each report format: spreadsheets, CSV and Markdown.

Model labels, file names and error messages come from users and servers. A spreadsheet treats a
cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
applications strip first) as a formula, so ``=HYPERLINK(...)`` in a label would become a live
link (OWASP, "CSV Injection"). Markdown renders ``[x](javascript:...)`` as a link and passes HTML
through.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP's list)."""


def spreadsheet_formula(value: Any) -> bool:
    """Whether ``value`` is text that a spreadsheet would read as a formula."""
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def csv_field(value: Any) -> Any:
    """A CSV field that no spreadsheet evaluates: such text gets a leading ``'`` (numbers stay numbers)."""
    return "'" + value if spreadsheet_formula(value) else value


_MARKDOWN = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "\n": " ",
        "\r": " ",
        **{c: "\\" + c for c in "\\`*_[](){}|!#~"},
    }
)


def markdown_text(text: str) -> str:
    """Text shown literally in Markdown (a table cell or a line): no link, image, HTML or emphasis."""
    return text.translate(_MARKDOWN)
