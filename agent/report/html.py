"""The report page: one self-contained HTML file that reads the same offline, in a CI artifact or an e-mail.

Nothing is loaded from anywhere: the style sheet is inline, the figures are inline SVG, there is no script and
no web font (the page uses the reader's own sans-serif and monospace). Every text that came from the user or
a model (the study's name, parameters, choices, prompts, programs, proposer names) goes through
:func:`esc`, so a prompt reading ``</pre><script>`` is shown, never run.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent import __version__
from agent.display import number, value_text
from agent.report.data import StudyData, proposer_colours
from agent.space import Code

#: In every report's head: what tells a report this program wrote (and may write over) from any other file.
GENERATOR = '<meta name="generator" content="tunesmith'

#: Characters of a Text or Code value in the best-parameters table; the whole text has its own section.
_TABLE_TEXT_CHARS = 100

_CSS = """
body { margin: 0; background: #fafafa; color: #222; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .4rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.lead { color: #555; margin: 0 0 1rem; }
nav { font-size: .9rem; margin: 1rem 0; }
nav a { margin-right: 1rem; color: #1f5fa8; text-decoration: none; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .92rem; }
th, td { text-align: left; padding: .2rem .9rem .2rem 0; border-bottom: 1px solid #eee; vertical-align: top; }
td.num, th.num { text-align: right; }
td { overflow-wrap: anywhere; }
td:first-child { overflow-wrap: normal; white-space: nowrap; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 50%; margin-right: .4em;
  vertical-align: -.05em; border: 1px solid #0003; }
.caption { color: #555; font-size: .9rem; margin: .2rem 0 .6rem; }
.empty { color: #777; font-style: italic; }
figure { margin: 0; }
figure svg { max-width: 100%; height: auto; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px; padding: .7rem .9rem;
  font: .85rem/1.4 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.diff span { display: block; }
.add { background: #e6ffec; color: #116329; }
.del { background: #ffebe9; color: #82071e; }
.hunk { color: #6f42c1; }
.file { color: #555; font-weight: bold; }
footer { margin-top: 3rem; color: #888; font-size: .8rem; }
"""


@dataclass(frozen=True)
class FigureSection:
    """A figure of the page: ``svg`` is the inline ``<svg>`` element, None when there is nothing to plot (then
    ``empty`` says why)."""

    key: str
    title: str
    caption: str
    empty: str
    svg: str | None


def esc(text: object) -> str:
    """``text`` safe in HTML text and in quoted attributes."""
    return html.escape(str(text), quote=True)


def page(data: StudyData, summary: Mapping[str, Any], figures: Sequence[FigureSection]) -> str:
    """The whole page: a header with the study's facts, the figures, the proposers table, the best texts.

    The proposers table follows the first figure, the best-so-far curve, whose steps it counts.
    """
    first, *rest = figures
    texts = [(name, _text_section(data, name)) for name, _ in data.space.text_items()]
    links = [(first.key, first.title), ("proposers", "Proposers"), *((f.key, f.title) for f in rest)]
    links += [(f"text-{name}", f"Best {name}") for name, _ in texts]
    body = [
        _header(data, summary),
        "<nav>" + "".join(f'<a href="#{esc(key)}">{esc(title)}</a>' for key, title in links) + "</nav>",
        _figure(first),
        _proposers(summary),
        *(_figure(f) for f in rest),
        *(section for _, section in texts),
        f"<footer>Made by tunesmith {esc(__version__)}.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'{GENERATOR} {esc(__version__)}">\n'
        f"<title>{esc(data.name)} · tunesmith report</title>\n<style>{_CSS}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def _header(data: StudyData, summary: Mapping[str, Any]) -> str:
    """The study's name and what a reader asks first: how many trials, how good the best, what it cost."""
    best = summary["best"]
    states = ", ".join(f"{n} {state}" for state, n in summary["states"].items() if n)
    lead = f"{summary['direction']} {data.value_label} · {summary['trials']} trials"
    lead += f" · best {number(best['value'])}" if best else " · no complete trial yet"
    facts: list[tuple[str, str]] = [
        ("Direction", esc(f"{summary['direction']} {data.value_label}")),
        ("Trials", esc(f"{summary['trials']}" + (f" ({states})" if states else ""))),
        (
            "Best value",
            esc(f"{number(best['value'])} (trial {best['number']}, proposed by {best['proposer']})")
            if best
            else "none yet",
        ),
        ("Proposer", esc(summary["proposer"])),
        ("Model", esc(summary["model"] or "none")),
        ("Model calls", esc(_spend(summary["spend"]))),
    ]
    if summary["task_model"]:
        task = summary["task_model"]
        facts.append(("Of which scoring", esc(f"{task['calls']} task-model calls, {task['tokens']:,} tokens")))
    if summary["held_out"]:
        scores = ", ".join(f"trial {row['trial']}: {number(row['score'])}" for row in summary["held_out"])
        facts.append((esc(f"Held-out {summary['held_out'][0]['metric']}"), esc(scores)))
    parts = [
        f'<header>\n<h1>{esc(data.name)}</h1>\n<p class="lead">{esc(lead)}</p>',
        _table([(f"<th>{label}</th>", f"<td>{value}</td>") for label, value in facts]),
    ]
    if best:
        parts.append("<h3>Best parameters</h3>")
        parts.append(_table([_param_row(data, n, v) for n, v in best["params"].items()], ("parameter", "value")))
    return "\n".join(parts) + "\n</header>"


def _spend(spend: Mapping[str, Any]) -> str:
    if not spend["calls"]:
        return "none"
    failed = f" ({spend['failed_calls']} failed)" if spend["failed_calls"] else ""
    return f"{spend['calls']} calls{failed}, {spend['tokens']:,} tokens, ${spend['usd']:.4f}"


def _param_row(data: StudyData, name: str, value: object) -> tuple[str, str]:
    """A best parameter: numbers at 6 digits; a text cut short with a link to where it is shown whole."""
    if name in dict(data.space.text_items()):
        shown = f'{esc(value_text(value, _TABLE_TEXT_CHARS))} <a href="#text-{esc(name)}">in full below</a>'
    else:
        shown = esc(value_text(value, _TABLE_TEXT_CHARS))
    return f"<td>{esc(name)}</td>", f"<td>{shown}</td>"


def _figure(section: FigureSection) -> str:
    content = (
        f"<figure>\n{section.svg}\n</figure>"
        if section.svg is not None
        else f'<p class="empty">{esc(section.empty)}</p>'
    )
    caption = f'<p class="caption">{esc(section.caption)}</p>' if section.svg is not None else ""
    return f'<section id="{esc(section.key)}">\n<h2>{esc(section.title)}</h2>\n{caption}\n{content}\n</section>'


def _proposers(summary: Mapping[str, Any]) -> str:
    """Who proposed how many trials, and how many of them beat the best of their time."""
    proposers: Mapping[str, Mapping[str, int]] = summary["proposers"]
    head = '<section id="proposers">\n<h2>Proposers</h2>\n'
    if not proposers:
        return head + '<p class="empty">No trials yet.</p>\n</section>'
    colours = proposer_colours(proposers)
    rows = [
        (
            f'<td><span class="swatch" style="background:{colours[name]}"></span>{esc(name)}</td>',
            f'<td class="num">{row["trials"]}</td>',
            f'<td class="num">{row["improvements"]}</td>',
        )
        for name, row in proposers.items()
    ]
    caption = (
        '<p class="caption">Improvements: trials that beat the best of the trials finished before them, in the '
        "order they finished (what <code>tunesmith status</code> shows).</p>\n"
    )
    return head + caption + _table(rows, ("proposer", "trials", "improvements"), numeric=(1, 2)) + "\n</section>"


def _text_section(data: StudyData, name: str) -> str:
    """The best trial's ``name`` in full, and what changed against the first trial's."""
    best = data.best()
    param = data.space[name]
    kind = f"{param.language} code" if isinstance(param, Code) else "text"
    head = f'<section id="text-{esc(name)}">\n<h2>Best {esc(name)}</h2>\n'
    if best is None:
        return head + '<p class="empty">Nothing to show yet: no trial has completed.</p>\n</section>'
    text = str(best.params.get(name, ""))
    parts = [
        head,
        f'<p class="caption">The {kind} of the best trial, {best.number} ({esc(best.proposer)}).</p>\n',
        f'<pre class="text">{esc(text)}</pre>\n',
    ]
    first = data.trials[0]
    parts.append(f"<h3>Against the first trial, {first.number}</h3>\n")
    before = str(first.params.get(name, ""))
    if first.number == best.number:
        parts.append('<p class="empty">The best trial is the first one.</p>\n')
    elif before == text:
        parts.append(f'<p class="empty">The same {kind} as the first trial.</p>\n')
    else:
        parts.append(_diff(before, text, f"trial {first.number}", f"trial {best.number}"))
    return "".join(parts) + "</section>"


def _diff(before: str, after: str, before_label: str, after_label: str) -> str:
    """A unified diff as a ``<pre>``, each line coloured by what it is."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=before_label, tofile=after_label, lineterm=""
    )
    return (
        '<pre class="diff">'
        + "".join(f'<span class="{_diff_class(line)}">{esc(line)}</span>' for line in lines)
        + "</pre>\n"
    )


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "add", "-": "del"}.get(line[:1], "same")


def _table(rows: Iterable[Sequence[str]], columns: Sequence[str] = (), numeric: Sequence[int] = ()) -> str:
    """A table of ready-made cells (escaped by the caller, who knows which hold markup), with a header row when
    ``columns`` are named; the ``numeric`` columns are right-aligned."""
    header = ""
    if columns:
        header = "<tr>" + "".join(
            f'<th class="num">{esc(c)}</th>' if i in numeric else f"<th>{esc(c)}</th>" for i, c in enumerate(columns)
        )
        header = f"<thead>{header}</tr></thead>"
    body = "".join("<tr>" + "".join(cells) + "</tr>\n" for cells in rows)
    return f"<table>{header}<tbody>\n{body}</tbody></table>"
