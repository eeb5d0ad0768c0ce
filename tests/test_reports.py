"""Reports: Excel reopened and checked against the store; CSV, JSON, Markdown; HTML in headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error, run_cli
from llmbench.measurement.results import GenerationResult
from llmbench.reports import load_runs, write_report
from llmbench.store import Store

XSS = '<img src=x onerror="window.__xss=1">"<script>window.__xss=2</script>'


@pytest.fixture
def sweep_id(tmp_path: Path) -> str:
    """A stored sweep of four fake runs (two output lengths x two delays) and one failed run."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: report-test\n"
        "models:\n  - default\n  - model: /missing/model.gguf\n    label: missing\n"
        "backends: [fake]\n"
        "settings: {prompt_tokens: 16, max_new_tokens: [8, 16], repetitions: 3,"
        " options: {token_delays: [0.001, 0.003]}}\n"
        "exclude: [{model: missing, max_new_tokens: 16}, {model: missing, token_delays: 0.003}]\n"
    )
    code, out, err = run_cli("sweep", str(path), "--format", "json")
    assert code == 0, err
    return str(json.loads(out)["sweep"])


def _rename_model(sweep: str, name: str) -> None:
    """Give one run a hostile model label, as a user could with `label:` in a sweep file."""
    with Store() as store:
        record = next(r for r in store.runs(sweep_id=sweep) if r.status == "ok")
        config = dict(record.config, sweep={**record.config["sweep"], "label": name})
        with store.db:
            store.db.execute(
                "UPDATE runs SET config = ?, model = ? WHERE id = ?", (json.dumps(config), name, record.id)
            )


def test_excel_matches_the_store(tmp_path: Path, sweep_id: str) -> None:
    from openpyxl import load_workbook

    out = tmp_path / "r.xlsx"
    code, _, err = run_cli("report", "--sweep", sweep_id, "--out", str(out))
    assert code == 0, err
    book = load_workbook(out)
    assert book.sheetnames == ["Summary", "Metrics", "Repetitions", "Environment"]
    summary = book["Summary"]
    header = [cell.value for cell in summary[1]]
    assert header[:5] == ["run", "model", "backend", "settings", "status"]
    assert "decode mean (tok/s)" in header and "peak RSS (MiB)" in header
    assert summary.freeze_panes == "B2" and summary.auto_filter.ref
    assert summary.conditional_formatting  # best / worst highlighted
    assert all(cell.font.bold for cell in summary[1])
    assert summary.column_dimensions["A"].width >= 12
    rows = {r[0]: dict(zip(header, r, strict=True)) for r in summary.iter_rows(min_row=2, values_only=True)}
    with Store() as store:
        records = list(store.runs(sweep_id=sweep_id))
    assert set(rows) == {record.id for record in records}
    for record in records:
        row = rows[record.id]
        assert row["status"] == record.status
        if record.status == "ok":
            assert isinstance(record.result, GenerationResult)
            expected = record.result.summary["decode_tok_s"].mean
            assert row["decode mean (tok/s)"] == pytest.approx(expected)
            assert row["TTFT mean (ms)"] == pytest.approx(record.result.summary["ttft_s"].mean * 1000)
        else:
            assert row["error"] == record.error
    decode_column = header.index("decode mean (tok/s)")
    assert summary.cell(row=2, column=decode_column + 1).number_format == "0.0"
    metrics = book["Metrics"]
    assert [c.value for c in metrics[1]][:6] == ["run", "model", "backend", "settings", "metric", "unit"]
    assert sum(1 for r in metrics.iter_rows(min_row=2, values_only=True) if r[4] == "decode_tok_s") == 4
    repetitions = list(book["Repetitions"].iter_rows(min_row=2, values_only=True))
    assert len(repetitions) == 4 * (3 + 1)  # 3 measured + 1 warm-up each
    environment = book["Environment"]
    env_header = [c.value for c in environment[1]]
    assert "cpu_model" in env_header and "llmbench" in env_header


def test_csv_json_markdown(tmp_path: Path, sweep_id: str) -> None:
    outs = [tmp_path / "r.csv", tmp_path / "r.json", tmp_path / "r.md"]
    code, _, err = run_cli("report", "--sweep", sweep_id, *[a for o in outs for a in ("-o", str(o))])
    assert code == 0, err
    with outs[0].open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 5 and {"id", "decode_tok_s", "ttft_ms", "peak_rss_mib"} <= set(table[0])
    document = json.loads(outs[1].read_text())
    assert len(document["runs"]) == 5
    ok = [run for run in document["runs"] if run["row"]["status"] == "ok"]
    assert all(run["repetitions"] and run["environment"]["python"] for run in ok)
    markdown = outs[2].read_text()
    assert markdown.count("\n| SmolLM2") == 4, markdown
    assert "## Failed runs" in markdown, markdown
    assert "**" in markdown, markdown


def test_markdown_and_csv_escape_model_names(tmp_path: Path, sweep_id: str) -> None:
    _rename_model(sweep_id, "a|b <c>")
    with Store() as store:
        runs = load_runs(store, [sweep_id])
    write_report(runs, tmp_path / "r.md")
    assert "a\\|b &lt;c&gt;" in (tmp_path / "r.md").read_text()


def test_unknown_extension_and_no_selection(tmp_path: Path) -> None:
    code, _, err = run_cli("report", "--out", str(tmp_path / "r.html"))
    one_line_error(code, err, "no sweep")
    code, _, err = run_cli("report", "--run", "abc", "--out", str(tmp_path / "r.pdf"))
    one_line_error(code, err)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download: the system binary)."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run make install (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        yield browser
        browser.close()


def test_html_report_renders_offline_with_charts_and_escapes_names(tmp_path: Path, sweep_id: str, browser: Any) -> None:
    _rename_model(sweep_id, XSS)
    out = tmp_path / "r.html"
    code, _, err = run_cli("report", "--sweep", sweep_id, "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "<script>window.__xss" not in text and "<img src=x" not in text
    assert "cdn" not in text.split("<body>")[0].lower()  # nothing fetched: plotly is inline

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: problems.append(f"request {r.url}") if not r.url.startswith("file:") else None)
    page.goto(out.as_uri())
    page.wait_for_selector(".plotly-graph-div .main-svg")
    assert problems == []
    assert page.evaluate("window.__xss === undefined")
    assert page.locator(".plotly-graph-div").count() == 4  # decode, TTFT, ITL, memory (no load/eval runs)
    assert page.locator("td", has_text="onerror").count() >= 1  # the payload shows as text
    assert page.locator("img").count() == 0
    bars = page.locator(".plotly-graph-div").first
    assert bars.locator("g.point").count() >= 4  # the bars were drawn
    assert XSS[:20] in bars.inner_text() or XSS[:8] in page.locator("body").inner_text()
    png = bars.screenshot()
    page.close()
    assert _distinct_colours(browser, png) > 10  # the chart drew something: not a blank image


def _distinct_colours(browser: Any, png: bytes) -> int:
    """Decode the screenshot in the browser itself (a canvas) and count its colours."""
    import base64

    page = browser.new_page()
    count = page.evaluate(
        """async (src) => {
            const img = new Image(); img.src = src; await img.decode();
            const canvas = document.createElement('canvas');
            canvas.width = img.width; canvas.height = img.height;
            const context = canvas.getContext('2d'); context.drawImage(img, 0, 0);
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const seen = new Set();
            for (let i = 0; i < data.length; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
            return seen.size;
        }""",
        "data:image/png;base64," + base64.b64encode(png).decode(),
    )
    page.close()
    return int(count)


FORMULAS = ('=HYPERLINK("http://example.invalid","click")', "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1")


def _stored_runs(names: tuple[str, ...]) -> list[Any]:
    """One ok run per hostile model name (its error text hostile too), loaded as a report would."""
    from llmbench.measurement.metrics import Summary
    from llmbench.measurement.results import GenerationResult, LoadResult, LoadStep
    from llmbench.store import RunRecord

    ids = []
    with Store() as store:
        for name in names:
            result = GenerationResult(load_s=0.1, summary={"decode_tok_s": Summary.of([10.0, 12.0])})
            record = RunRecord("generate", "failed", name, "fake", {}, {"python": "3"}, result=result, error=name)
            ids.append(store.save(record))
        step = LoadStep(mode="concurrency", concurrency=2, sent=3, ok=0, failed=3, errors={"connect": 2, "http_500": 1})
        load = RunRecord("load", "failed", names[0], "openai", {}, {}, result=LoadResult(steps=[step]))
        ids.append(store.save(load))
        return load_runs(store, run_ids=ids)


def test_excel_stores_formula_like_text_as_text(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    write_report(_stored_runs(FORMULAS), tmp_path / "r.xlsx")
    book = load_workbook(tmp_path / "r.xlsx")
    seen = set()
    for sheet in book.worksheets:
        for line in sheet.iter_rows():
            for cell in line:
                if isinstance(cell.value, str) and cell.value.lstrip("\t\r").startswith(("=", "+", "-", "@")):
                    assert cell.data_type == "s", (sheet.title, cell.coordinate, cell.value)
                    seen.add(cell.value)
    assert {'=HYPERLINK("http://example.invalid","click")', "+1+1", "-2+3", "@SUM(A1:A2)"} <= seen
    steps = book["Load steps"]
    errors = [c.value for c in steps[1]].index("errors")
    assert [r[errors] for r in steps.iter_rows(min_row=2, values_only=True)] == ["connect 2, http_500 1"]  # not a dict


def test_csv_neutralises_formulas_per_owasp(tmp_path: Path) -> None:
    write_report(_stored_runs(FORMULAS), tmp_path / "r.csv")
    with (tmp_path / "r.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {row["model"] for row in table} == {"'" + name for name in FORMULAS}
    assert all(row["error"] == row["model"] for row in table if row["kind"] == "generate")
    for row in table:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
            assert not value.startswith("-") or value.replace("-", "", 1).replace(".", "", 1).isdigit(), value
    assert [row["errors"] for row in table if row["kind"] == "load"] == ["connect 2, http_500 1"]


def test_markdown_shows_links_and_html_in_names_as_text(tmp_path: Path) -> None:
    hostile = ("[x](javascript:alert(1))", "![img](http://example.invalid/p.png)", "<b>bold</b> *em* `code`")
    write_report(_stored_runs(hostile), tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "](javascript:" not in text and "[x]" not in text and "![img]" not in text
    assert "<b>" not in text and "*em*" not in text and "`code`" not in text
    assert "\\[x\\]\\(javascript:alert\\(1\\)\\)" in text
    import markdown_it

    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    assert "<a " not in rendered and "<img" not in rendered and "<b>" not in rendered and "<em>" not in rendered
    assert "[x](javascript:alert(1))" in rendered  # shown literally
    assert "connect 2, http_500 1" in rendered  # error counts, not a dict repr
