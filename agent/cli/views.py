"""How the commands show a study: its summary, a table of trials, one trial in full, and the JSON forms.

The closing summary of ``run`` and ``status NAME`` are the same view, and ``trials --json`` and ``show --json``
hold the same fields as the tables, so what a person reads and what a script parses never disagree. Numbers
are shown at 6 significant digits (:mod:`agent.display`); the JSON keeps them whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.cli.common import console
from agent.display import failure_cause, number, short_params, value_text
from agent.trial import SANDBOX_NOTE

if TYPE_CHECKING:
    from agent.storage import LLMCallRecord
    from agent.study import Study
    from agent.trial import Trial

#: Failed trials listed under a summary.
_FAILURES_SHOWN = 3


def trial_record(trial: Trial) -> dict[str, Any]:
    """A trial as JSON: everything ``show`` prints but the model call."""
    return {
        "number": trial.number,
        "state": "interrupted" if trial.interrupted else trial.state.value,
        "value": trial.value,
        "params": dict(trial.params),
        "metrics": dict(trial.metrics),
        "proposer": trial.proposer,
        "rationale": trial.rationale,
        "error": trial.error,
        "feedback": trial.feedback,
        "late": trial.late,
        "started_at": trial.started_at.isoformat(),
        "finished_at": None if trial.finished_at is None else trial.finished_at.isoformat(),
        "duration_s": trial.duration_s,
        "parents": list(trial.parents),
        "artifacts": dict(trial.artifacts),
        "llm_call_id": trial.llm_call_id,
    }


def call_record(call: LLMCallRecord) -> dict[str, Any]:
    """A model call as JSON: the prompt and the reply that produced a trial."""
    return {
        "id": call.id,
        "purpose": call.purpose,
        "model": call.model,
        "messages": call.messages,
        "reply": call.reply,
        "error": call.error,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "latency_s": call.latency_s,
        "usd": call.usd,
    }


def producing_call(study: Study, trial: Trial) -> LLMCallRecord | None:
    """The model call whose reply the trial's candidate came from, if the model proposed it."""
    for call in study.llm_calls:
        if call.id == trial.llm_call_id or (trial.llm_call_id is None and trial.number in call.trial_numbers):
            return call
    return None


def print_summary(study: Study, stopped: str | None) -> None:
    """The study in a screen: counts, model spend, the best trial with its metrics, the proposer mix, failures."""
    from rich.table import Table

    from agent.steering import steering_line
    from agent.summary import summarize

    s = summarize(study)
    out = console()
    states = ", ".join(f"{n} {state}" for state, n in s["states"].items() if n)
    header = f"[bold]{escape(s['name'])}[/] ({s['direction']}{', ' + s['metric'] if s['metric'] else ''}): "
    header += f"{s['trials']} trials ({states or 'none'})"
    if stopped:
        header += f"; stopped: {stopped}"
    out.print(header, soft_wrap=True)
    if s["events"]:
        out.print(f"Steering: {steering_line(s['events'])}", markup=False, soft_wrap=True)
    spend = s["spend"]
    if s["model"] or spend["calls"]:
        failed = spend["failed_calls"]
        out.print(
            f"{'Model ' + s['model'] if s['model'] else 'Model calls (chat, task model)'}: {spend['calls']} calls"
            f"{f' ({failed} failed or gave no usable candidate)' if failed else ''}, "
            f"{spend['tokens']:,} tokens, ${spend['usd']:.4f}",
            markup=False,
            soft_wrap=True,
        )
    if s["task_model"]:
        task = s["task_model"]
        out.print(
            f"  of which scoring candidates (the task model): {task['calls']} calls, {task['tokens']:,} tokens",
            markup=False,
            soft_wrap=True,
        )
    if s["best"]:
        best = s["best"]
        table = Table(title=f"Best trial #{best['number']}: {number(best['value'])} ({best['proposer']})")
        table.add_column("parameter")
        table.add_column("value")
        for name, value in best["params"].items():
            table.add_row(name, value_text(value))
        others = {name: v for name, v in best["metrics"].items() if name != s["metric"]}
        if others:
            table.add_section()
            for name, value in others.items():
                table.add_row(f"[dim]metric[/] {escape(name)}", number(value))
        out.print(table)
    if s["held_out"]:
        best_number = s["best"]["number"] if s["best"] else None
        first = min(row["trial"] for row in s["held_out"])  # the initial candidate is scored first of all
        labels = {first: "initial"} | ({best_number: "best"} if best_number is not None else {})
        if first == best_number:
            labels[first] = "initial and best"
        rows = sorted(s["held_out"], key=lambda row: row["trial"])
        scores = ", ".join(
            f"trial {row['trial']}"
            + (f" ({labels[row['trial']]})" if row["trial"] in labels else "")
            + f" {number(row['score'])}"
            for row in rows
        )
        out.print(f"Held-out test split ({s['held_out'][0]['metric']}): {scores}", markup=False, soft_wrap=True)
    mix = Table(title="Proposers")
    mix.add_column("proposer")
    mix.add_column("trials", justify="right")
    mix.add_column("improvements", justify="right")
    for name, row in s["proposers"].items():
        mix.add_row(name, str(row["trials"]), str(row["improvements"]))
    out.print(mix)
    failed_trials = [t for t in study.trials if t.error and not t.interrupted]
    if failed_trials:
        out.print(f"{len(failed_trials)} failed trials; the last ones (tunesmith show STUDY N for the rest):")
        for trial in failed_trials[-_FAILURES_SHOWN:]:
            out.print(f"  trial {trial.number}: {failure_cause(trial)}", markup=False, soft_wrap=True)
    weaker = sandbox_notes(study.trials)
    if weaker:
        count, notes = weaker
        out.print(f"Sandbox: {count} trial(s) ran with less enforced than asked for:", markup=False, soft_wrap=True)
        for note in notes:
            out.print(f"  {note}", markup=False, soft_wrap=True)


def sandbox_notes(trials: Sequence[Trial]) -> tuple[int, list[str]] | None:
    """How many trials carry ``[sandbox]`` notes (what the sandbox could not enforce: no bubblewrap, no network
    cut) and the distinct notes, so that weaker confinement is said where a user looks, not only per trial."""
    notes: list[str] = []
    count = 0
    for trial in trials:
        lines = (trial.feedback or "").splitlines()
        found = [line.removeprefix(SANDBOX_NOTE) for line in lines if line.startswith(SANDBOX_NOTE)]
        count += bool(found)
        notes += [note for note in found if note not in notes]
    return (count, notes) if count else None


def print_studies(summaries: Sequence[dict[str, Any]]) -> None:
    """One row per study of a storage."""
    from rich.table import Table

    table = Table(title="Studies")
    for column in ("name", "direction", "trials", "complete", "failed", "running", "best"):
        table.add_column(column, justify="left" if column in ("name", "direction") else "right")
    for s in summaries:
        table.add_row(
            escape(s["name"]),
            s["direction"],
            str(s["trials"]),
            str(s["states"]["complete"]),
            str(s["states"]["failed"]),
            str(s["states"]["running"]),
            number(s["best"]["value"]) if s["best"] else "-",
        )
    console().print(table)


def print_trials(study: Study, trials: Sequence[Trial]) -> None:
    """A table of ``trials``: the outcome, who proposed it, how long it took, its parameters."""
    from rich.table import Table

    table = Table(title=f"{study.name}: {len(trials)} trials", title_justify="left")
    for column, justify in (("#", "right"), ("state", "left"), ("value", "right"), ("proposer", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("s", justify="right")
    table.add_column("parameters / error", overflow="fold")
    for trial in trials:
        record = trial_record(trial)
        detail = short_params(trial.params)
        if trial.error:
            detail += f"\n[red]{escape(failure_cause(trial) or trial.error)}[/]"
        table.add_row(
            str(trial.number),
            record["state"] + (" (late)" if trial.late else ""),
            number(trial.value),
            trial.proposer,
            number(trial.duration_s),
            detail,
        )
    console().print(table)


def print_trial(study: Study, trial: Trial, call: LLMCallRecord | None) -> None:
    """One trial in full, and the prompt and reply of the model call that proposed it."""
    out = console()
    record = trial_record(trial)
    seconds = "" if trial.duration_s is None else f", {number(trial.duration_s)} s"
    out.print(
        f"[bold]Trial {trial.number}[/] of {escape(study.name)}: {record['state']}"
        f"{' (late result)' if trial.late else ''} ({trial.proposer}{seconds}, "
        f"started {trial.started_at:%Y-%m-%d %H:%M:%S} UTC)",
        soft_wrap=True,
    )
    out.print(f"value: {number(trial.value)}", markup=False)
    _section("parameters", [f"{name} = {_full(value)}" for name, value in trial.params.items()])
    from agent.steering import event_record, steering_line  # not at import: `tunesmith --help` stays light

    started = trial.started_at.timestamp()
    in_force = [event_record(e) for e in study.events if e.in_force_at(started)]
    if in_force:
        _section("steering in force when it started", [steering_line([e]) for e in in_force])
    if trial.metrics:
        _section("metrics", [f"{name} = {number(value)}" for name, value in trial.metrics.items()])
    if trial.rationale:
        _section("rationale", [trial.rationale])
    if trial.parents:
        _section("parents", [", ".join(str(p) for p in trial.parents)])
    if trial.error:
        _section("error", [trial.error])
    if trial.feedback:
        _section("output (the end of what it printed)", trial.feedback.splitlines())
    if trial.artifacts:
        _section("artifacts", [f"{name} ({digest[:12]})" for name, digest in trial.artifacts.items()])
    if "diff" in trial.artifacts:  # an edited program or prompt: what changed against its parent
        _section("diff against the parent", study.artifact(trial, "diff").decode(errors="replace").splitlines())
    for name, title in (("examples", "dev examples"), ("test", "held-out test examples")):
        if name in trial.artifacts:
            _section(title, _example_lines(study, trial, name))
    if call is not None:
        tokens = f"{call.prompt_tokens}+{call.completion_tokens} tokens"
        _section(
            f"proposed by model call {call.id} ({call.purpose}, {call.model}, {tokens}, {number(call.latency_s)} s)",
            [],
        )
        for message in call.messages:
            _section(f"  prompt: {message.get('role', '?')}", str(message.get("content", "")).splitlines(), indent=4)
        _section("  reply", (call.reply or call.error or "").splitlines(), indent=4)


def _example_lines(study: Study, trial: Trial, name: str, shown: int = 10) -> list[str]:
    """How a trial did on each dev example: the count, which examples flipped against its parent, the misses."""
    from tools.prompt_eval import read_results

    results = read_results(study.artifact(trial, name))
    right = sum(1 for r in results if float(r.get("score", 0.0)) >= 1.0)
    lines = [f"{right} of {len(results)} scored 1"]
    parent = next((t for t in study.trials if trial.parents and t.number == trial.parents[0]), None)
    if parent is not None and name in parent.artifacts:
        before = {r.get("line"): float(r.get("score", 0.0)) for r in read_results(study.artifact(parent, name))}
        now = {r.get("line"): float(r.get("score", 0.0)) for r in results}
        gained = [str(line) for line, score in now.items() if line in before and score > before[line]]
        lost = [str(line) for line, score in now.items() if line in before and score < before[line]]
        lines.append(f"against trial {parent.number}: better on {_lines(gained)}; worse on {_lines(lost)}")
    missed = [r for r in results if float(r.get("score", 0.0)) < 1.0]
    for r in missed[:shown]:
        expected = r.get("expected")
        expected = expected[0] if isinstance(expected, list) and expected else expected
        lines.append(f"line {r.get('line')}: expected {expected!r}, got {r.get('output')!r}")
    if len(missed) > shown:
        lines.append(f"... and {len(missed) - shown} more")
    return lines


def _lines(numbers: Sequence[str]) -> str:
    return "no line" if not numbers else f"line {numbers[0]}" if len(numbers) == 1 else f"lines {', '.join(numbers)}"


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def _section(title: str, lines: Sequence[str], indent: int = 2) -> None:
    out = console()
    out.print(f"[bold]{escape(title)}[/]")
    for line in lines:
        out.print(" " * indent + line, markup=False, soft_wrap=True)


def _full(value: object) -> str:
    """A parameter shown whole (``show`` is where a long prompt or program is read): numbers at 6 digits."""
    if isinstance(value, str) and "\n" in value:
        return "\n" + "\n".join("    " + line for line in value.splitlines())
    return value_text(value) if not isinstance(value, str) else value


def escape(text: str) -> str:
    """``text`` shown as typed in rich markup (a study named ``[x]`` is not a style)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)
