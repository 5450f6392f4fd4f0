"""The report's figures, drawn from histories made by hand: what each plot shows, what it does with nothing to
show, and the SVG and PNG forms (inline-ready, repeatable, text shown as typed)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from agent.report import figures
from agent.report.data import StudyData, log_scaled, proposer_colours
from agent.space import Categorical, Float, Int, Space, Text
from agent.storage import LLMCallRecord
from agent.testing.proposers import MIXED_SPACE, make_trials, trials_at
from agent.trial import Trial


def data(trials: list[Trial], space: Space = MIXED_SPACE, calls: list[LLMCallRecord] | None = None, **kw) -> StudyData:
    settings = {"name": "s", "direction": "minimize", "metric": "loss", **kw}
    return StudyData(space=space, trials=trials, calls=calls or [], **settings)


def history() -> list[Trial]:
    """Ten trials of three proposers, one failed; trials 0, 2 and 5 improve (minimizing)."""
    values = [5.0, 6.0, 3.0, None, 4.0, 1.0, 2.0, 1.5, 9.0, 1.2]
    proposers = ["enqueued", "bo", "bo", "bo", "llm", "llm", "bo", "llm", "bo", "llm"]
    return [replace(t, proposer=p) for t, p in zip(make_trials(MIXED_SPACE, values), proposers, strict=True)]


def call(purpose: str, at: float, tokens: int = 100, usd: float = 0.001) -> LLMCallRecord:
    return LLMCallRecord(purpose, "m", [], prompt_tokens=tokens, completion_tokens=tokens // 2, usd=usd, created_at=at)


def texts(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))]


def test_the_steps_of_the_best_so_far_are_the_trials_that_beat_every_earlier_one() -> None:
    minimizing = data(history())
    assert [t.number for t in minimizing.improvements()] == [0, 2, 5]
    assert minimizing.best() is not None and minimizing.best().number == 5  # type: ignore[union-attr]
    assert [t.number for t in replace(minimizing, direction="maximize").improvements()] == [0, 1, 8]
    assert data([]).best() is None


def test_best_so_far_marks_each_improvement_in_its_proposers_colour() -> None:
    figure = figures.best_so_far(data(history()))
    assert figure is not None
    [ax] = figure.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["trial", "best so far", "improved by enqueued", "improved by bo", "improved by llm"]
    marked = {tuple(c.get_facecolor()[0][:3]): c.get_offsets().tolist() for c in ax.collections[1:]}
    colours = proposer_colours(["bo", "llm"])
    from matplotlib.colors import to_rgb

    assert marked[to_rgb(colours["bo"])] == [[2.0, 3.0]]
    assert marked[to_rgb(colours["llm"])] == [[5.0, 1.0]]
    [line] = ax.get_lines()
    assert line.get_xdata()[-1] == 9  # the curve runs to the last trial
    assert ax.get_ylabel() == "loss"


def test_every_plot_draws_a_mixed_history() -> None:
    calls = [call("propose", 100.0), call("repair", 130.0), call("evaluate", 131.0)]
    drawn = {plot.key: plot.draw(data(history(), calls=calls)) for plot in figures.PLOTS}
    assert all(isinstance(figure, Figure) for figure in drawn.values()), drawn
    assert list(drawn) == ["best-so-far", "parallel-coordinates", "slices", "importance", "model-cost"]


@pytest.mark.parametrize(
    "case",
    ["no trials", "only failures", "no numeric parameter", "two complete trials"],
)
def test_a_plot_with_nothing_to_show_is_none(case: str) -> None:
    text_only = Space(prompt=Text("hi"))
    study = {
        "no trials": data([]),
        "only failures": data(make_trials(MIXED_SPACE, [None, None, None])),
        "no numeric parameter": data(
            trials_at(text_only, [{"prompt": "a"}, {"prompt": "b"}] * 2, [1, 2, 3, 4]), text_only
        ),
        "two complete trials": data(make_trials(MIXED_SPACE, [1.0, 2.0, None])),
    }[case]
    drawn = {plot.key: plot.draw(study) for plot in figures.PLOTS}
    assert drawn["model-cost"] is None  # no model call in any of them
    expected_none = {
        "no trials": {"best-so-far", "parallel-coordinates", "slices", "importance"},
        "only failures": {"best-so-far", "parallel-coordinates", "slices", "importance"},
        "no numeric parameter": {"parallel-coordinates", "slices", "importance"},
        "two complete trials": {"importance"},
    }[case]
    assert {key for key, figure in drawn.items() if figure is None} == expected_none | {"model-cost"}


def test_parallel_axes_place_numbers_on_their_search_scale_and_choices_evenly() -> None:
    assert figures._position(Float(1e-4, 1.0, log=True), 1e-2) == pytest.approx(0.5)
    assert figures._position(Float(0.0, 10.0), 2.5) == pytest.approx(0.25)
    assert figures._position(Int(1, 100, log=True), 10) == pytest.approx(0.5)
    assert figures._position(Int(0, 4), 1) == pytest.approx(0.25)
    colour = Categorical(["red", "green", "blue"])
    assert [figures._position(colour, c) for c in colour.choices] == [0.0, 0.5, 1.0]
    assert figures._position(Categorical([True, 1]), 1) == 1.0  # 1 is not True
    assert figures._position(Categorical(["only"]), "only") == 0.5
    ticks = figures._ticks(Float(1e-4, 1.0, log=True))
    assert [label for _, label in ticks] == ["0.0001", "0.001", "0.01", "0.1", "1"]


def test_parallel_coordinates_have_an_axis_per_numeric_parameter_and_the_value() -> None:
    figure = figures.parallel_coordinates(data(history()))
    assert figure is not None
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "lr (log)", "n", "color", "loss"]
    [lines] = ax.collections
    assert len(lines.get_segments()) == 9  # the complete trials
    assert {"red", "green", "blue"} <= set(texts(figure))


def test_rank_correlations_find_the_parameter_that_drives_the_value() -> None:
    space = Space(a=Float(0.0, 1.0), b=Float(0.0, 1.0), c=Categorical(["x", "y"]))
    points = [{"a": i / 9, "b": (i * 7 % 10) / 9, "c": "xy"[i % 2]} for i in range(10)]
    study = data(trials_at(space, points, [p["a"] ** 2 + (0.01 if p["c"] == "y" else 0.0) for p in points]), space)
    ranks = figures.rankdata([t.value for t in study.scored()])
    scores = {
        name: figures._association(p, [t.params[name] for t in study.scored()], ranks) for name, p in space.items()
    }
    assert scores["a"] == pytest.approx(1.0, abs=0.02) and scores["b"] < 0.5
    # two choices: eta is the |rho| of the 0/1 indicator
    indicator = figures._association(Float(0.0, 1.0), [float(p["c"] == "y") for p in points], ranks)
    assert scores["c"] == pytest.approx(indicator)
    figure = figures.importance(study)
    assert figure is not None and [t.get_text() for t in figure.axes[0].get_yticklabels()][-1] == "a"


def test_model_cost_keeps_the_optimizer_and_the_task_model_apart() -> None:
    calls = [call("propose", 0.0), call("evaluate", 10.0), call("repair", 20.0, usd=0.5), call("test", 300.0)]
    figure = figures.model_cost(data([], calls=calls))
    assert figure is not None
    tokens, usd = figure.axes
    legend = [t.get_text() for t in tokens.get_legend().get_texts()]
    assert legend == ["optimizer: 2 calls (propose, repair)", "task model: 2 calls (evaluate, test)"]
    optimizer = usd.get_lines()[0]
    assert list(optimizer.get_ydata()) == pytest.approx([0.0, 0.001, 0.501, 0.501])
    assert list(optimizer.get_xdata()) == pytest.approx([0.0, 0.0, 20 / 60, 5.0])  # minutes, to the last call
    assert tokens.get_xlabel() == "minutes since the first model call"


def test_values_spanning_decades_go_on_a_log_axis_labelled_in_plain_numbers() -> None:
    assert log_scaled([10.0, 0.001]) and not log_scaled([1.0, 2.0]) and not log_scaled([-1.0, 1e6])
    values = [10.0**-i for i in range(6)]
    study = data(make_trials(MIXED_SPACE, values))
    figure = figures.best_so_far(study)
    assert figure is not None and figure.axes[0].get_yscale() == "log"
    svg = figures.svg_text(figure, "best")
    assert "mathdefault" not in svg and ">0.001<" in svg


def test_labels_are_shown_as_typed_in_the_svg() -> None:
    space = Space(price=Categorical(["$5 & up", "<b>x</b>"]), y=Float(0.0, 1.0))
    points = [{"price": "$5 & up", "y": 0.1}, {"price": "<b>x</b>", "y": 0.9}]
    figure = figures.slices(data(trials_at(space, points, [1.0, 2.0]), space))
    assert figure is not None
    svg = figures.svg_text(figure, "slices")
    assert "$5 &amp; up" in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "<b>" not in svg


def test_svg_is_an_inline_element_repeatable_with_ids_of_its_own() -> None:
    study = data(history())
    first = figures.svg_text(figures.best_so_far(study), "a")  # type: ignore[arg-type]
    again = figures.svg_text(figures.best_so_far(study), "a")  # type: ignore[arg-type]
    other = figures.svg_text(figures.best_so_far(study), "b")  # type: ignore[arg-type]
    assert first.startswith("<svg") and first.endswith("</svg>")
    assert "<?xml" not in first and "DOCTYPE" not in first and "<metadata" not in first
    assert first == again
    ids = set(re.findall(r'id="([^"]+)"', first))
    assert ids and not ids & set(re.findall(r'id="([^"]+)"', other))


def test_a_png_is_titled_and_the_figure_left_as_it_was(tmp_path: Path) -> None:
    figure = figures.importance(data(history()))
    assert figure is not None
    path = tmp_path / "importance.png"
    figures.save_png(figure, path, "Rank correlation")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert "Rank correlation" not in texts(figure)
