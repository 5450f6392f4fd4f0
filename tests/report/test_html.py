"""The report page of a realistic study (a prompt tuned with a mixed space, scripted models, enqueued, random and
failed trials): what it holds, that user text in it is escaped, that it loads nothing from anywhere, the PNG
export, the studies with nothing to draw, and (slow) the page in a real headless Chromium."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from agent.report import Report, ReportUnavailable, render_html, require_matplotlib, write_pngs
from agent.space import Space, Text
from agent.summary import summarize
from tests.cli.helpers import REPO
from tests.report.chromium import check_page
from tests.report.studies import NAME, REWRITES, empty_study, failing_study, numeric_study, prompt_study

PLOT_KEYS = ["best-so-far", "parallel-coordinates", "slices", "importance", "model-cost"]
#: Namespace names of SVG and RDF: URIs that identify, never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return Report.of(prompt_study(tmp_path_factory.mktemp("report")))


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return report.html()


def section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"no section {key}"
    return match.group(1)


def test_the_page_has_every_plot_the_proposers_and_the_best_text(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert re.findall(r'<section id="([^"]+)"', page) == [
        "best-so-far",
        "proposers",
        *PLOT_KEYS[1:],
        "text-instructions",
    ]
    assert page.count("<svg") == len(PLOT_KEYS)
    assert all(section(page, key).count("<svg") == 1 for key in PLOT_KEYS)


def test_the_header_says_what_the_study_is_how_it_went_and_what_it_cost(report: Report, page: str) -> None:
    header = page[page.index("<header>") : page.index("</header>")]
    spend = report.summary["spend"]
    assert "<td>maximize exact_match</td>" in header
    assert "<td>11 (10 complete, 1 failed)</td>" in header
    assert "<td>1 (trial 3, proposed by prompt)</td>" in header
    assert f"{spend['calls']} calls, {spend['tokens']:,} tokens, ${spend['usd']:.4f}" in header
    assert spend["usd"] > 0 and "80 task-model calls" in header
    assert "<td>shots</td><td>2</td>" in header and "<td>temperature</td><td>0.0722</td>" in header
    assert 'href="#text-instructions"' in header


def test_the_proposers_table_is_the_summary_of_status(report: Report, page: str) -> None:
    table = section(page, "proposers")
    rows = re.findall(r"</span>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", table)
    expected = {name: (row["trials"], row["improvements"]) for name, row in report.summary["proposers"].items()}
    assert {name: (int(trials), int(improved)) for name, trials, improved in rows} == expected
    assert expected == {"enqueued": (1, 1), "prompt": (7, 2), "random": (3, 0)}


def test_the_best_text_is_shown_whole_with_its_diff_against_the_first_trial(page: str) -> None:
    text = section(page, "text-instructions")
    best = html.escape(REWRITES[2])
    assert f'<pre class="text">{best}</pre>' in text
    assert "Against the first trial, 0" in text
    assert '<span class="del">-Read this review.</span><span class="del">-Then answer.</span>' in text
    assert '<span class="add">+Answer with one word: positive or negative.</span>' in text
    assert f'<span class="add">+{html.escape(REWRITES[2].splitlines()[-1])}</span>' in text


def test_user_text_is_escaped_everywhere(page: str) -> None:
    assert "<script" not in page.lower() and "&lt;script&gt;alert(&#x27;&lt;x&gt; &amp; y&#x27;)" in page
    assert NAME not in page and page.count(html.escape(NAME)) == 2  # the title and the heading
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page  # a choice, in the figures' text
    assert "<td>&quot;$5 &amp; up&quot;</td>" in page  # the best trial's choice, in the header


def test_the_page_loads_nothing_from_anywhere(page: str) -> None:
    lowered = page.lower()
    for reach in ("<script", "<link", "<iframe", "<img", " src=", "@import", "url(http", "@font-face"):
        assert reach not in lowered, reach
    assert set(re.findall(r"https?://[^\s\"')<]+", page)) <= NAMESPACES
    assert not re.search(r'href="(?!#|data:image/png;base64,)', page), "links go to the page itself"


def test_pngs_are_written_for_the_plots_that_have_something_to_show(report: Report, tmp_path: Path) -> None:
    written = report.write_pngs(tmp_path / "plots" / "new")
    assert [p.name for p in written] == [f"{key}.png" for key in PLOT_KEYS]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


@pytest.mark.parametrize("case", ["no trials", "only failures", "text only", "no model calls"])
def test_a_study_with_little_to_show_still_gets_a_page(case: str) -> None:
    study = {
        "no trials": lambda: empty_study(),
        "only failures": lambda: failing_study(),
        "text only": lambda: empty_study(Space(prompt=Text("Be <brief>.")), name="text"),
        "no model calls": lambda: numeric_study(4),
    }[case]()
    report = Report.of(study)
    page = report.html()
    notes = re.findall(r'<p class="empty">([^<]+)</p>', page)
    drawn = [d.plot.key for d in report.plots if d.figure is not None]
    assert page.count("<svg") == len(drawn) == 5 - len([n for n in notes if n.startswith("Nothing to plot")])
    assert "Nothing to plot: the study made no model call." in notes
    if case == "no model calls":
        assert drawn == PLOT_KEYS[:4] and "<th>Model calls</th><td>none</td>" in page
    else:
        assert page.count("<svg") == 0 and "Nothing to plot yet: no trial has completed." in notes
    if case == "text only":
        assert "Nothing to show yet: no trial has completed." in notes and "Be &lt;brief&gt;" not in page
    assert f"<h1>{summarize(study)['name']}</h1>" in page


def test_render_html_and_write_pngs_read_the_study_themselves(tmp_path: Path) -> None:
    study = failing_study()
    assert render_html(study) == Report.of(study).html()
    assert write_pngs(study, tmp_path / "none") == [] and (tmp_path / "none").is_dir()


def test_without_matplotlib_the_error_names_the_command_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ReportUnavailable, match=re.escape('pip install "tunesmith[report]"')):
        require_matplotlib()
    with pytest.raises(ImportError):  # a ReportUnavailable is an ImportError too
        render_html(empty_study())


# A real browser ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium that ``.ci/chromium.sh`` finds or installs; the test is skipped without one, except on CI."""
    found = subprocess.run([str(REPO / ".ci" / "chromium.sh")], capture_output=True, text=True, timeout=600)
    if found.returncode != 0:
        reason = f"no Chromium for the browser test: {found.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found.stdout.strip()


@pytest.mark.slow
def test_the_page_opens_in_chromium_without_an_error(chromium: str, page: str, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    screenshot = tmp_path / "report.png"
    count = "document.querySelectorAll('svg').length"
    started = time.monotonic()
    checked = check_page(chromium, path, screenshot, evaluate=[count, "document.title"])
    print(f"Chromium checked the report in {time.monotonic() - started:.1f} s")
    if folder := os.environ.get("TUNESMITH_TEST_ARTIFACTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(folder) / "report.png")
    assert checked.problems == []
    assert checked.values[count] == len(PLOT_KEYS)
    assert checked.values["document.title"] == f"{NAME} · tunesmith report"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000
