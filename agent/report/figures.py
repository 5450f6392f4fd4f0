"""The report's figures: one function per plot, each returning a matplotlib Figure, or None when the study has
nothing to draw there yet (no complete trial, no numeric parameter, no model call).

The figures are built with matplotlib's object API (``Figure``, never pyplot): no backend is chosen and no
display is needed (``savefig`` renders a PNG with Agg and an SVG with the SVG backend on its own), and no
global figure list keeps them alive after the report is written. Every figure is drawn under :data:`STYLE`,
which also turns mathtext off: a categorical choice ``"$5"`` is shown as typed, not parsed as a formula.

The SVG form is what the HTML page inlines (text kept as text, ids made repeatable and distinct between the
figures of one page); the PNG form is for terminals and CI logs, titled, since it is seen alone.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from scipy.stats import rankdata

from agent.display import cut, number
from agent.report.data import StudyData, is_task_call, log_scaled, proposer_colours
from agent.space import Categorical, Float, Int, NumericParam, ParamValue
from agent.trial import Trial

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

#: How every figure looks; also read when a figure is saved (the SVG settings).
STYLE: dict[RcKeyType, Any] = {
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",  # text stays <text>: smaller, selectable, drawn in the page's own fonts
    "svg.hashsalt": "tunesmith",  # ids of clip paths and markers: the same for the same figure, not random
}
#: Above this many complete trials, the points of a scatter are an image inside its SVG (axes and text stay
#: vector): 1000 trials drawn one by one take 600 KB of slices, as an image 200 KB. (Lines of the parallel
#: coordinates stay vector: as an image they are larger up to about 2000 trials.)
DENSE = 400
#: Inches: a study of many parameters gets narrower axes, not a figure no page can show.
_WIDEST = 16.0
#: Characters of a categorical choice or proposer name on an axis or in a legend.
LABEL_CHARS = 24
#: The least complete trials a correlation is computed on.
MIN_FOR_IMPORTANCE = 3
#: Value colours: the better end of the scale is the bright one, whichever the direction.
_VALUE_COLOURS = {"maximize": "viridis", "minimize": "viridis_r"}
#: Trial-number colours: Blues from a light blue, not from white, so the earliest trials show on a white page.
_TRIAL_COLOURS = ListedColormap(matplotlib.colormaps["Blues"](np.linspace(0.25, 1.0, 256)), name="trials")
_MUTED = "#b0b0b0"
_INK = "#333333"
#: A tag of an SVG text (text content has its < escaped, so it never looks like one), and an id or a reference
#: to one inside a tag.
_TAG = re.compile(r"<[^>]+>")
_REFERENCE = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')

P = ParamSpec("P")


def _styled(draw: Callable[P, Figure | None]) -> Callable[P, Figure | None]:
    """Draw under :data:`STYLE` (settings are read as artists are made, so the style must be on while drawing)."""

    @functools.wraps(draw)
    def styled(*args: P.args, **kwargs: P.kwargs) -> Figure | None:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return styled


# The plots --------------------------------------------------------------------------------------------------
@_styled
def best_so_far(data: StudyData) -> Figure | None:
    """Every complete trial's value and the best so far, each improvement marked in its proposer's colour."""
    scored = data.scored()
    if not scored:
        return None
    figure = Figure(figsize=(9, 3.6))
    ax = figure.subplots()
    ax.scatter(
        [t.number for t in scored],
        _values(scored),
        s=12,
        color=_MUTED,
        label="trial",
        zorder=2,
        rasterized=len(scored) > DENSE,
    )
    steps = data.improvements()
    last = max(t.number for t in data.trials)
    ax.step(
        [t.number for t in steps] + [last],
        _values(steps) + _values(steps[-1:]),
        where="post",
        color=_INK,
        linewidth=1.4,
        label="best so far",
        zorder=3,
    )
    colours = proposer_colours(t.proposer for t in data.trials)  # all of them, as the proposers table does
    for proposer in dict.fromkeys(t.proposer for t in steps):  # in the order they first improved
        mine = [t for t in steps if t.proposer == proposer]
        ax.scatter(
            [t.number for t in mine],
            _values(mine),
            s=46,
            color=colours[proposer],
            edgecolor="black",
            linewidth=0.5,
            label=f"improved by {cut(proposer, LABEL_CHARS)}",
            zorder=4,
        )
    if log_scaled(_values(scored)):
        _log_axis(ax, "y")
    ax.set_xlabel("trial")
    ax.set_ylabel(data.value_label)
    ax.legend(loc="best")
    return figure


@_styled
def parallel_coordinates(data: StudyData) -> Figure | None:
    """One line per complete trial across an axis per numeric parameter and one for the value, coloured by the
    value; numbers are placed on their own scale (log or linear) between their bounds, choices evenly."""
    params = data.space.numeric_items()
    scored = data.scored()
    if not params or not scored:
        return None
    values = _values(scored)
    low, high = min(values), max(values)
    rows = [
        [_position(p, t.params[name]) for name, p in params] + [_spread(v, low, high)]
        for t, v in zip(scored, values, strict=True)
    ]
    norm = Normalize(low, high)
    cmap = matplotlib.colormaps[_VALUE_COLOURS[data.direction]]
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=data.direction == "minimize")
    xs = np.arange(len(params) + 1)
    lines = LineCollection(
        [np.column_stack([xs, rows[i]]) for i in order],  # the best drawn last, on top
        colors=[cmap(norm(values[i])) for i in order],
        linewidths=1.0,
        alpha=0.7,
    )
    figure = Figure(figsize=(min(max(6.0, 1.7 * len(xs) + 1.5), _WIDEST), 4.2))
    ax = figure.subplots()
    ax.add_collection(lines)
    for x, (_, param) in enumerate(params):
        _axis(ax, x, _ticks(param))
    _axis(ax, len(params), [(_spread(v, low, high), f"{v:.3g}") for v in np.linspace(low, high, 5)])
    ax.set_xticks(xs, [_axis_name(name, p) for name, p in params] + [data.value_label])
    ax.set_xlim(-0.2, len(params) + 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    colourbar = figure.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.03, pad=0.02)
    colourbar.set_label(data.value_label)
    return figure


@_styled
def slices(data: StudyData) -> Figure | None:
    """One scatter per numeric parameter: the value against the parameter, later trials darker."""
    params = data.space.numeric_items()
    scored = data.scored()
    if not params or not scored:
        return None
    columns = min(3, len(params))
    rows = math.ceil(len(params) / columns)
    figure = Figure(figsize=(3.3 * columns + 1.0, 2.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    numbers = [t.number for t in scored]
    norm = Normalize(min(numbers), max(numbers))
    values = _values(scored)
    points = None
    for ax, (name, param) in zip(axes.flat, params, strict=False):
        if isinstance(param, Categorical):
            xs: list[float] = [_choice_index(param, t.params[name]) for t in scored]
            ax.set_xticks(range(len(param.choices)), [_choice_label(c) for c in param.choices])
            ax.set_xlim(-0.5, len(param.choices) - 0.5)
        else:
            xs = [float(t.params[name]) for t in scored]  # type: ignore[arg-type]
            if param.log:
                _log_axis(ax, "x")
            ax.set_xlim(*_padded(param))
        points = ax.scatter(
            xs,
            values,
            c=numbers,
            cmap=_TRIAL_COLOURS,
            norm=norm,
            s=16,
            edgecolor=_INK,
            linewidth=0.3,
            rasterized=len(scored) > DENSE,
        )
        ax.set_xlabel(_axis_name(name, param))
    for ax in axes.flat[len(params) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel(data.value_label)
    if log_scaled(values):
        _log_axis(axes[0][0], "y")  # the y axis is shared: one call sets every panel's
    assert points is not None
    figure.colorbar(points, ax=axes, fraction=0.03, pad=0.02).set_label("trial")
    return figure


@_styled
def importance(data: StudyData) -> Figure | None:
    """How strongly each numeric parameter goes with the value: |Spearman rho| for numbers, the rank correlation
    ratio eta for choices (eta of a two-choice parameter is the |rho| of its 0/1 indicator, so the two compare).

    A cheap, model-free reading of the history: it sees monotone effects of one parameter at a time, not an
    optimum in the middle of a range nor interactions, and says nothing about cause.
    """
    params = data.space.numeric_items()
    scored = data.scored()
    if not params or len(scored) < MIN_FOR_IMPORTANCE:
        return None
    ranks = rankdata(_values(scored))
    scores = [(_association(param, [t.params[name] for t in scored], ranks), name) for name, param in params]
    scores.sort()  # barh draws bottom-up: the strongest ends on top
    figure = Figure(figsize=(7, 0.45 * len(scores) + 1.3))
    ax = figure.subplots()
    ax.barh([name for _, name in scores], [score for score, _ in scores], color="#4c72b0")
    for y, (score, _) in enumerate(scores):
        ax.text(score + 0.01, y, f"{score:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(f"|Spearman rho| with {data.value_label} (numbers), rank correlation ratio eta (choices)")
    ax.grid(axis="y", visible=False)
    return figure


@_styled
def model_cost(data: StudyData) -> Figure | None:
    """Cumulative tokens and USD of the model calls over time: the optimizer's (propose, repair, evolve...) and
    the task model's (evaluate, test) apart, since they are budgeted and tuned apart."""
    if not data.calls:
        return None
    start = min(c.created_at for c in data.calls)
    end = max(c.created_at for c in data.calls)
    unit, per = _time_unit(end - start)
    figure = Figure(figsize=(10, 3.4))
    tokens_ax, usd_ax = figure.subplots(1, 2)
    groups = {
        "optimizer": [c for c in data.calls if not is_task_call(c)],
        "task model": list(filter(is_task_call, data.calls)),
    }
    for (group, calls), colour in zip(groups.items(), ("#d62728", "#1f77b4"), strict=True):
        if not calls:
            continue
        calls.sort(key=lambda c: c.created_at)
        times = [(calls[0].created_at - start) / per] + [(c.created_at - start) / per for c in calls]
        times.append((end - start) / per)  # every line runs to the last call of all
        tokens = np.cumsum([0] + [c.prompt_tokens + c.completion_tokens for c in calls])
        usd = np.cumsum([0.0] + [c.usd for c in calls])
        purposes = ", ".join(dict.fromkeys(c.purpose for c in calls))
        label = f"{group}: {len(calls)} calls ({cut(purposes, 40)})"
        tokens_ax.step(times, [*tokens, tokens[-1]], where="post", color=colour, label=label)
        usd_ax.step(times, [*usd, usd[-1]], where="post", color=colour, label=label)
    tokens_ax.set_ylabel("tokens (cumulative)")
    usd_ax.set_ylabel("USD (cumulative)")
    for ax in (tokens_ax, usd_ax):
        ax.set_xlabel(f"{unit} since the first model call")
        ax.set_ylim(bottom=0)
    tokens_ax.legend(loc="upper left")
    return figure


# Drawing helpers --------------------------------------------------------------------------------------------
def _values(trials: Sequence[Trial]) -> list[float]:
    return [float(t.value) for t in trials if t.value is not None]


def _position(param: NumericParam, value: ParamValue) -> float:
    """Where ``value`` sits on its parallel axis: 0 at the bottom, 1 at the top."""
    if not isinstance(param, Categorical):
        return _scaled(param, float(value))  # type: ignore[arg-type]
    levels = len(param.choices)
    return 0.5 if levels == 1 else _choice_index(param, value) / (levels - 1)


def _scaled(param: Float | Int, value: float) -> float:
    """``value`` between the parameter's bounds as 0..1, on the scale it is searched on."""
    low, high = float(param.low), float(param.high)
    if param.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low)


def _spread(value: float, low: float, high: float) -> float:
    """``value`` between ``low`` and ``high`` as 0..1; the middle when they are equal."""
    return 0.5 if high == low else (value - low) / (high - low)


def _choice_index(param: Categorical, value: ParamValue) -> float:
    """The level of a choice: its index, matched as the space matches choices (``1`` is not ``True``)."""
    return float(np.argmax(param.to_unit(value)))


def _choice_label(choice: ParamValue) -> str:
    return cut(choice if isinstance(choice, str) else number(choice) if choice is not None else "None", LABEL_CHARS)


def _axis_name(name: str, param: NumericParam) -> str:
    return f"{name} (log)" if isinstance(param, Float | Int) and param.log else name


def _ticks(param: NumericParam) -> list[tuple[float, str]]:
    """(position, label) of a parallel axis's ticks: each choice, else five values between the bounds (evenly
    spaced on the parameter's own scale, whole numbers for an integer)."""
    if isinstance(param, Categorical):
        return [(_position(param, c), _choice_label(c)) for c in param.choices]
    raw = np.geomspace(param.low, param.high, 5) if param.log else np.linspace(param.low, param.high, 5)
    values = sorted({round(float(v)) for v in raw}) if isinstance(param, Int) else [float(v) for v in raw]
    return [(_scaled(param, v), f"{v:.3g}") for v in values]


def _axis(ax: Axes, x: float, ticks: Sequence[tuple[float, str]]) -> None:
    """A vertical axis of the parallel-coordinates plot at ``x``, its tick labels to the right of it."""
    ax.axvline(x, color=_INK, linewidth=0.8, zorder=0)
    for y, label in ticks:
        ax.plot([x - 0.03, x], [y, y], color=_INK, linewidth=0.8)
        ax.text(
            x + 0.04,
            y,
            label,
            fontsize=7,
            va="center",
            ha="left",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
            zorder=5,
        )


def _log_axis(ax: Axes, which: Literal["x", "y"]) -> None:
    """Put an axis of ``ax`` on a log scale labelled 0.001, 0.01, ...: matplotlib's own labels are mathtext
    (``10^{-3}``), which :data:`STYLE` turns off, so they would show as source."""
    if which == "x":
        ax.set_xscale("log")
    else:
        ax.set_yscale("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _padded(param: Float | Int) -> tuple[float, float]:
    """The parameter's bounds with a margin, so points on a bound are not cut in half."""
    if param.log:
        ratio = (param.high / param.low) ** 0.04
        return param.low / ratio, param.high * ratio
    margin = 0.04 * (param.high - param.low)
    return param.low - margin, param.high + margin


def _association(param: NumericParam, values: Sequence[ParamValue], ranks: np.ndarray) -> float:
    """|Spearman rho| between a number and the value ranks, or the correlation ratio eta of choices on them."""
    if isinstance(param, Categorical):
        groups = np.array([_choice_index(param, v) for v in values])
        total = float(np.sum((ranks - ranks.mean()) ** 2))
        if total == 0:
            return 0.0
        between = sum(
            float(np.sum(groups == g)) * (float(ranks[groups == g].mean()) - float(ranks.mean())) ** 2
            for g in np.unique(groups)
        )
        return math.sqrt(between / total)
    x = rankdata(np.array(values, dtype=float))
    if np.ptp(x) == 0 or np.ptp(ranks) == 0:
        return 0.0
    return abs(float(np.corrcoef(x, ranks)[0, 1]))


def _time_unit(span_s: float) -> tuple[str, float]:
    """The unit a time axis of ``span_s`` seconds reads best in, and its length in seconds."""
    if span_s < 120:
        return "seconds", 1.0
    if span_s < 2 * 3600:
        return "minutes", 60.0
    return "hours", 3600.0


# The report's plots, in page order --------------------------------------------------------------------------
@dataclass(frozen=True)
class Plot:
    """One plot of the report: its file name (``key``.png), title, what it shows, and why it may be empty."""

    key: str
    title: str
    caption: str
    empty: str
    draw: Callable[[StudyData], Figure | None]


PLOTS: tuple[Plot, ...] = (
    Plot(
        "best-so-far",
        "Best so far",
        "Each complete trial's value (grey) and the best so far. The marked trials improved on every earlier "
        "trial, coloured by the proposer that made them.",
        "Nothing to plot yet: no trial has completed.",
        best_so_far,
    ),
    Plot(
        "parallel-coordinates",
        "Parallel coordinates",
        "One line per complete trial through each numeric parameter and the value, coloured by the value (the "
        "bright end is the better one). Numbers sit between their bounds on the scale they are searched on; "
        "choices are evenly spaced.",
        "Nothing to plot yet: it needs a complete trial and a numeric parameter.",
        parallel_coordinates,
    ),
    Plot(
        "slices",
        "Parameter slices",
        "The value against each numeric parameter, one complete trial a point; later trials are darker.",
        "Nothing to plot yet: it needs a complete trial and a numeric parameter.",
        slices,
    ),
    Plot(
        "importance",
        "Rank correlation with the value",
        "How strongly each numeric parameter goes with the value, on the complete trials: |Spearman rho| for "
        "numbers, the rank correlation ratio eta for choices. It sees one parameter at a time and only monotone "
        "effects; it is not a model-based importance and says nothing about cause.",
        f"Nothing to plot yet: it needs {MIN_FOR_IMPORTANCE} complete trials and a numeric parameter.",
        importance,
    ),
    Plot(
        "model-cost",
        "Model cost over time",
        "Cumulative tokens and USD of the study's model calls: the optimizer's (propose, repair, evolve) and the "
        "task model's (evaluate, test: scoring candidates) apart.",
        "Nothing to plot: the study made no model call.",
        model_cost,
    ),
)


# Saving -----------------------------------------------------------------------------------------------------
def svg_text(figure: Figure, key: str) -> str:
    """``figure`` as an ``<svg>`` element to inline in a page: no XML header or doctype (the doctype names an
    external DTD), no metadata block, and every id prefixed with ``key``, since matplotlib numbers its ids
    (``axes_1``) afresh in each figure and ids must be unique in a page. The same study gives the same text."""
    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    return _prefix_ids(text[text.index("<svg") :].strip(), key)


def _prefix_ids(svg: str, prefix: str) -> str:
    """``svg`` with each id, and each reference to one (``href="#x"``, ``url(#x)``), prefixed. Only tags are
    touched: a label reading ``id="x"`` is text between tags, where it stays as it is."""

    def in_tag(tag: re.Match[str]) -> str:
        return _REFERENCE.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", tag.group(0))

    return _TAG.sub(in_tag, svg)


def save_png(figure: Figure, path: Path, title: str) -> None:
    """Write ``figure`` to ``path`` as a PNG with ``title`` on it: a PNG is looked at alone, without the page's
    headings. The title is taken off again, so the figure is left as it was."""
    heading = figure.suptitle(title, fontsize=11, fontweight="bold")
    try:
        with matplotlib.rc_context(STYLE):
            figure.savefig(path, format="png", metadata={"Software": None})
    finally:
        heading.remove()
