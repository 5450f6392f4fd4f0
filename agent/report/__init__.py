"""Pictures of a study: a self-contained HTML report (``tunesmith report``) and the same plots as PNG files.

::

    from agent.report import render_html, write_pngs

    Path("report.html").write_text(render_html(study))
    write_pngs(study, Path("plots"))  # best-so-far.png, parallel-coordinates.png, ...

The report needs matplotlib, an optional dependency (``pip install "tunesmith[report]"``); it is imported
only when a report is made, so the rest of tunesmith (and ``tunesmith --help``) never pays for it. A study
with nothing to draw yet (no trial, only failures, no numeric parameter, no model call) still gets a report:
each empty plot says why instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import TunesmithError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from agent.report.data import StudyData
    from agent.report.figures import Plot
    from agent.study import Study

__all__ = ["DrawnPlot", "Report", "ReportUnavailable", "render_html", "require_matplotlib", "write_pngs"]

PIP_REPORT = 'pip install "tunesmith[report]"'


class ReportUnavailable(TunesmithError, ImportError):
    """matplotlib, which draws the report, is not installed (or cannot be imported)."""


def require_matplotlib() -> None:
    """Fail early, in one line that names the command to run, when the report cannot be drawn.

    Raises:
        ReportUnavailable: importing matplotlib fails (not installed, or broken).
    """
    try:
        importlib.import_module("matplotlib")
    except ImportError as exc:
        raise ReportUnavailable(f"the report needs matplotlib ({exc}); install it with: {PIP_REPORT}") from None


@dataclass(frozen=True)
class DrawnPlot:
    """One plot of the report (:class:`~agent.report.figures.Plot`) and its figure: None when the study has
    nothing to draw there yet."""

    plot: Plot
    figure: Figure | None


@dataclass(frozen=True)
class Report:
    """A study read once and drawn once, so that its page and its PNGs show the same trials, and a caller
    writing both pays for the drawing once."""

    data: StudyData
    summary: dict[str, Any]
    plots: list[DrawnPlot]

    @classmethod
    def of(cls, study: Study) -> Report:
        """Read ``study`` and draw every plot, in page order.

        Raises:
            ReportUnavailable: matplotlib is not installed.
        """
        require_matplotlib()
        from agent.report.data import StudyData
        from agent.report.figures import PLOTS
        from agent.summary import summarize

        data = StudyData.of(study)
        return cls(data, summarize(study), [DrawnPlot(plot, plot.draw(data)) for plot in PLOTS])

    def html(self) -> str:
        """The page: one HTML file that needs nothing else (no script, no font, no URL)."""
        from agent.report.figures import svg_text
        from agent.report.html import FigureSection, page

        sections = [
            FigureSection(
                d.plot.key,
                d.plot.title,
                d.plot.caption,
                d.plot.empty,
                None if d.figure is None else svg_text(d.figure, d.plot.key),
            )
            for d in self.plots
        ]
        return page(self.data, self.summary, sections)

    def write_pngs(self, folder: Path) -> list[Path]:
        """Save each plot that has something to show as ``folder/<key>.png`` (the folder is made); returns the
        files written, in page order.

        Raises:
            OSError: the folder or a file cannot be written.
        """
        from agent.report.figures import save_png

        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for d in self.plots:
            if d.figure is not None:
                path = folder / f"{d.plot.key}.png"
                save_png(d.figure, path, d.plot.title)
                written.append(path)
        return written


def render_html(study: Study) -> str:
    """The report of ``study`` as one self-contained HTML page.

    Raises:
        ReportUnavailable: matplotlib is not installed.
    """
    return Report.of(study).html()


def write_pngs(study: Study, folder: Path) -> list[Path]:
    """The plots of ``study`` as PNG files in ``folder``; see :meth:`Report.write_pngs`.

    Raises:
        ReportUnavailable: matplotlib is not installed.
        OSError: the folder or a file cannot be written.
    """
    return Report.of(study).write_pngs(folder)
