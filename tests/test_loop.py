"""The loop (agent/loop.py): reservations, executors, errors, interrupts, prefetching, stop reasons.

Each test here reproduces a fault measured on the first core, with real threads, processes and files.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil
import pytest

from agent import (
    Budget,
    ConfigError,
    Float,
    Int,
    RepeatedFailure,
    Space,
    StopReason,
    Study,
    TrialState,
    TunesmithError,
    create_study,
    load_study,
    open_storage,
)
from agent.executors import InlineExecutor
from agent.loop import Coordinator, run_trial
from agent.proposers import StudyView
from agent.space import ParamValue
from agent.trial import Proposal, Trial
from tools.command import CommandEvaluator
from tools.evaluation import Evaluation
from tools.function import FunctionEvaluator

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SPACE = Space(x=Float(0.0, 1.0), n=Int(1, 3))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'loop.db'}"


def distinct_points(study: Study) -> int:
    return len({tuple(sorted(t.params.items())) for t in study.trials})


@pytest.mark.parametrize("workers", [2, 4])
def test_parallel_workers_never_get_the_same_point(url: str, workers: int) -> None:
    study = create_study("par", SPACE, storage=url, proposer="random", seed=0)
    summary = study.optimize(lambda p: p["x"], n_trials=24, workers=workers)
    assert summary.trials_run == 24 and distinct_points(study) == 24


SAME_SEED_WORKER = """
import sys, time
from agent import Float, Int, Space, create_study
space = Space(x=Float(0.0, 1.0), n=Int(1, 3))
study = create_study("shared", space, storage=sys.argv[1], proposer=sys.argv[2], seed=0, load_if_exists=True)
while time.time() < float(sys.argv[3]):  # start together, to collide as much as possible
    time.sleep(0.002)
study.optimize(lambda p: (p["x"] - 0.3) ** 2, n_trials=int(sys.argv[4]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("proposer", "processes", "each"), [("random", 3, 10), ("bo", 3, 4)])
def test_processes_with_one_seed_never_evaluate_one_point_twice(
    url: str, proposer: str, processes: int, each: int
) -> None:
    start_at = str(time.time() + (8.0 if proposer == "bo" else 3.0))
    procs = [
        subprocess.Popen([sys.executable, "-c", SAME_SEED_WORKER, url, proposer, start_at, str(each)], env=ENV)
        for _ in range(processes)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * processes
    study = load_study("shared", url)
    assert len(study.trials) == processes * each and distinct_points(study) == processes * each


class BrokenEvaluator:
    """An evaluator with a bug: trial 0 raises instead of returning a failed evaluation. The others finish only
    once trial 0 is recorded failed, so the run has seen the error before a slot frees (a sleep here let a
    loaded machine finish another trial first, and the run refilled its slot)."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name

    def evaluate(self, params: Mapping[str, ParamValue], trial: Trial) -> Evaluation:
        if trial.number == 0:
            raise RuntimeError("evaluator bug")
        deadline = time.monotonic() + 60
        while load_study(self.name, self.url).trials[0].state is not TrialState.FAILED:
            assert time.monotonic() < deadline, "trial 0 was never recorded failed"
            time.sleep(0.02)
        return Evaluation(float(params["x"]))


@pytest.mark.parametrize("workers", [1, 2])
def test_an_evaluator_that_raises_reaches_the_caller_after_its_trial_is_failed(url: str, workers: int) -> None:
    study = create_study("bug", SPACE, storage=url, proposer="random", seed=0)
    with pytest.raises(RuntimeError, match="evaluator bug"):
        study.optimize(BrokenEvaluator(url, "bug"), n_trials=6, workers=workers)
    trials = study.trials
    assert trials[0].state is TrialState.FAILED and "evaluator raised RuntimeError: evaluator bug" in trials[0].error
    assert "Traceback" in (trials[0].feedback or "")
    assert not any(t.state is TrialState.RUNNING for t in trials)
    assert len(trials) == workers  # no trial is started after the error; the others finish
    assert all(t.state is TrialState.COMPLETE for t in trials[1:])


JOB = """
[study]
name = "stop"
storage = "sqlite:///study.db"
workers = 3
seed = 0

[space]
x = {{ type = "float", low = 0, high = 1 }}

[proposer]
kind = "random"

[objective]
command = ["{python}", "objective.py", "{{x}}"]

[budget]
trials = 10
"""

# Leaves a child of its own behind too (a process tree, not one process), then waits to be stopped.
SLOW_OBJECTIVE = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(os.path.join("pids", str(os.getpid())), "w") as f:
    f.write(str(child.pid))
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_run_with_several_workers_marks_every_trial_and_kills_every_process(
    tmp_path: Path, sig: signal.Signals
) -> None:
    (tmp_path / "job.toml").write_text(JOB.format(python=sys.executable))
    (tmp_path / "objective.py").write_text(SLOW_OBJECTIVE)
    (tmp_path / "pids").mkdir()
    run = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "job.toml"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len([p for p in (tmp_path / "pids").iterdir() if p.read_text()]) < 3:
        assert time.monotonic() < deadline and run.poll() is None, "the objectives never started"
        time.sleep(0.05)
    objectives = {int(p.name): int(p.read_text()) for p in (tmp_path / "pids").iterdir()}
    run.send_signal(sig)
    assert run.wait(timeout=30) == 130  # well before the objectives' 60 s: the run did not wait for them
    trials = load_study("stop", f"sqlite:///{tmp_path / 'study.db'}").trials
    assert len(trials) == 3
    assert all(t.state is TrialState.FAILED and t.interrupted for t in trials)
    # Killed, they are gone once reaped; one left alive would still be sleeping when the deadline passes.
    deadline = time.monotonic() + 30
    while left := [pid for pair in objectives.items() for pid in pair if alive(pid)]:
        assert time.monotonic() < deadline, f"processes left running: {left}"
        time.sleep(0.05)


class NamedClient:
    """The smallest LLMClient: it always proposes x = 0.5, n = 2."""

    model = "my-model"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, messages: Sequence[Mapping[str, str]], schema: object = None, **kwargs: object) -> object:
        from agent.llm import Completion

        self.calls += 1
        text = '{"candidates": [{"params": {"x": 0.5, "n": 2}, "rationale": "middle"}]}'
        return Completion(text, __import__("json").loads(text), None, 10, 10, 0.01, self.model)


def test_a_study_made_with_a_client_object_can_be_loaded_and_run(url: str, caplog: pytest.LogCaptureFixture) -> None:
    client = NamedClient()
    create_study("obj", SPACE, storage=url, proposer="llm", model=client, seed=0).optimize(lambda p: p["x"], n_trials=1)
    assert client.calls == 1
    study = load_study("obj", url)  # the object itself cannot be stored
    assert study.optimize(lambda p: p["x"], n_trials=2).trials_run == 2
    assert "pass the client" in caplog.text or "cannot be used" in caplog.text
    again = load_study("obj", url, model=client)
    again.optimize(lambda p: p["x"], n_trials=1)
    assert client.calls == 2


def test_stop_reasons_are_an_enum(url: str) -> None:
    study = create_study("why", SPACE, storage=url, proposer="random", seed=0)
    assert study.optimize(lambda p: p["x"], n_trials=2).stopped_because is StopReason.N_TRIALS
    assert study.optimize(lambda p: p["x"], budget=Budget(trials=3)).stopped_because is StopReason.TRIAL_BUDGET
    slow = study.optimize(lambda p: time.sleep(0.3) or p["x"], budget=Budget(wall_time=0.5))
    assert slow.stopped_because is StopReason.WALL_TIME and slow.stopped_because == "wall time"


class RecordingProposer:
    """Records what each proposal was made from: how many trials had finished and how many were running."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self._made = threading.Condition()

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        with self._made:
            self.seen.append((len(view.trials), len(pending)))
            self._made.notify_all()
        k = len(view.trials) + len(pending)
        return [Proposal({"x": (k * 0.137) % 1, "n": 1}, self.name)]

    def wait_for(self, proposals: int) -> bool:
        """Whether ``proposals`` were made within a minute."""
        with self._made:
            return self._made.wait_for(lambda: len(self.seen) >= proposals, timeout=60)


@pytest.mark.parametrize("prefetch", [True, False])
def test_the_next_proposal_is_prepared_while_a_trial_runs(url: str, prefetch: bool) -> None:
    # Not timed windows (on a loaded machine a background proposal may start only after a short trial ended):
    # with prefetch each trial waits until the next trial's proposal is made, which only a proposal made in
    # the background can satisfy; without, each proposal must have seen every earlier result.
    storage = open_storage(url)
    created = create_study("pre", SPACE, storage=storage, proposer="random")
    proposer = RecordingProposer()
    study = Study(storage, storage.get_study(created.name), proposer=proposer)  # type: ignore[arg-type]
    prepared: list[bool] = []

    def objective(params: Mapping[str, ParamValue], trial: Trial) -> float:
        if prefetch and trial.number < 3:
            prepared.append(proposer.wait_for(trial.number + 2))
        return float(params["x"])

    study.optimize(objective, n_trials=4, prefetch=prefetch)
    assert prepared == ([True] * 3 if prefetch else [])
    # (finished, running) as each proposal saw them; nothing is prepared for a fifth trial that will not run.
    assert proposer.seen == ([(0, 0), (0, 1), (1, 1), (2, 1)] if prefetch else [(0, 0), (1, 0), (2, 0), (3, 0)])
    assert all(t.state is TrialState.COMPLETE for t in study.trials) and distinct_points(study) == 4


@pytest.mark.slow
def test_evaluation_in_worker_processes(url: str) -> None:
    study = create_study("proc", SPACE, storage=url, proposer="random", seed=0)
    evaluator = FunctionEvaluator("tests.objectives:quadratic")
    summary = study.optimize(evaluator, n_trials=6, workers=2, executor="processes")
    assert summary.trials_run == 6 and all(t.state is TrialState.COMPLETE for t in study.trials)
    assert study.best_value == min((t.params["x"] - 0.3) ** 2 for t in study.trials)
    with pytest.raises(ConfigError, match="importable") as caught:
        study.optimize(lambda p: p["x"], n_trials=1, executor="processes")
    assert isinstance(caught.value, TunesmithError) and isinstance(caught.value, ValueError)
    assert not any(t.state is TrialState.RUNNING for t in study.trials)


def test_one_trial_s_life(url: str) -> None:
    study = create_study("one", SPACE, storage=url, proposer="random", seed=0)
    trial = run_trial(study, FunctionEvaluator(lambda p: p["x"] * 2), InlineExecutor())
    assert trial.state is TrialState.COMPLETE and trial.value == pytest.approx(2 * trial.params["x"])


def test_concurrent_asks_in_threads_reserve_distinct_points(url: str) -> None:
    study = create_study("ask", SPACE, storage=url, proposer="random", seed=0)
    asked: list[Trial] = []

    def ask() -> None:
        for _ in range(5):
            asked.append(study.ask())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({tuple(sorted(t.params.items())) for t in asked}) == 20
    assert sorted(t.number for t in asked) == list(range(20))


def test_one_worker_records_each_trial_before_the_next_starts(url: str) -> None:
    study = create_study("seq", SPACE, storage=url, proposer="random", seed=0)
    study.optimize(lambda p: time.sleep(0.05) or p["x"], n_trials=5)
    trials = study.trials
    assert all(a.finished_at is not None and a.finished_at <= b.started_at for a, b in itertools.pairwise(trials))


class SecondIsLate:
    """Proposes at once, then takes ``late_s`` over every later proposal, like a model that hangs."""

    name = "late"

    def __init__(self, late_s: float) -> None:
        self.late_s = late_s

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        if view.trials:
            time.sleep(self.late_s)
        return [Proposal({"x": 0.25 * (1 + len(view.trials)), "n": 1}, self.name)]


def test_no_trial_starts_after_the_wall_time_ran_out_while_proposing(url: str) -> None:
    # A proposal that ends past the wall time (a slow model, a long BO fit) must not start a trial that could
    # run for hours after the run should have stopped.
    # The first proposal is instant and the second outlasts the run (not 0.3 s each against 0.5 s, which a
    # loaded machine could stretch past the wall time before the first trial started).
    storage = open_storage(url)
    created = create_study("late", SPACE, storage=storage, proposer="random")
    study = Study(storage, storage.get_study(created.name), proposer=SecondIsLate(2.5))  # type: ignore[arg-type]
    summary = study.optimize(lambda p: float(p["x"]), budget=Budget(wall_time=2), prefetch=False)
    assert summary.stopped_because is StopReason.WALL_TIME
    assert summary.trials_run == len(study.trials) == 1


# Repeated identical failures ------------------------------------------------------------------------------
def broken_objective(params: Mapping[str, ParamValue]) -> float:
    return undefined_name + float(params["x"])  # type: ignore[name-defined]  # noqa: F821  # the typo under test


def test_a_typo_in_the_objective_stops_the_run_after_five_identical_failures(url: str) -> None:
    study = create_study("typo", SPACE, storage=url, proposer="random", seed=0)
    with pytest.raises(RepeatedFailure) as caught:
        study.optimize(broken_objective, n_trials=20)
    error = caught.value
    assert isinstance(error, TunesmithError) and isinstance(error, RuntimeError)
    assert (error.count, error.cause) == (5, "NameError: name 'undefined_name' is not defined")
    message = str(error)
    assert message.startswith(
        "the first 5 trials of this run all failed with the same error: NameError: name 'undefined_name' is not "
        "defined; fix the objective (the trials are kept) or pass max_consecutive_failures=None to go on"
    )
    assert "return undefined_name + float" in message  # the traceback's tail: where the typo is
    trials = study.trials
    assert len(trials) == 5 and all(t.state is TrialState.FAILED for t in trials)
    assert study.ask().number == 5  # the run ended cleanly: ask() is free of its budget again


def test_a_command_missing_a_module_stops_the_run_with_the_import_error(url: str) -> None:
    study = create_study("cmd", SPACE, storage=url, proposer="random", seed=0)
    evaluator = CommandEvaluator([sys.executable, "-c", "import nonexistent_module", "{x}"])
    with pytest.raises(RepeatedFailure) as caught:
        study.optimize(evaluator, n_trials=12)
    assert caught.value.count == 5 and len(study.trials) == 5
    assert caught.value.cause == (
        "the command exited with status 1: ModuleNotFoundError: No module named 'nonexistent_module'"
    )


def test_the_coordinator_reports_a_repeated_failure_as_its_stop_reason(url: str) -> None:
    study = create_study("coord", SPACE, storage=url, proposer="random", seed=0)
    summary = Coordinator(study, FunctionEvaluator(broken_objective), InlineExecutor(), n_trials=9).run()
    assert summary.stopped_because is StopReason.REPEATED_FAILURE and summary.trials_run == 5
    assert summary.repeated_failure is not None and summary.repeated_failure.count == 5


def test_running_trials_finish_after_a_repeated_failure_stops_the_run(url: str) -> None:
    def slow_typo(params: Mapping[str, ParamValue]) -> float:
        time.sleep(0.05)
        return broken_objective(params)

    study = create_study("par-typo", SPACE, storage=url, proposer="random", seed=0)
    with pytest.raises(RepeatedFailure, match="NameError"):
        study.optimize(slow_typo, n_trials=30, workers=3)
    trials = study.trials
    # Slots freed by the fifth failure may have been refilled before it was recorded; those trials finish too.
    assert 5 <= len(trials) <= 5 + 2 * 3 and all(t.state is TrialState.FAILED and not t.interrupted for t in trials)


def test_failures_with_different_errors_do_not_stop_the_run(url: str) -> None:
    def alternating(params: Mapping[str, ParamValue], trial: Trial) -> float:
        raise (ValueError if trial.number % 2 else KeyError)("no luck")

    study = create_study("alt", SPACE, storage=url, proposer="random", seed=0)
    assert study.optimize(alternating, n_trials=8).trials_run == 8
    assert all(t.state is TrialState.FAILED for t in study.trials)


def test_max_consecutive_failures_none_runs_the_whole_budget(url: str) -> None:
    study = create_study("none", SPACE, storage=url, proposer="random", seed=0)
    summary = study.optimize(broken_objective, n_trials=7, max_consecutive_failures=None)
    assert summary.stopped_because is StopReason.N_TRIALS and summary.trials_run == 7
    with pytest.raises(ValueError, match="max_consecutive_failures must be a positive integer or None, got 0"):
        study.optimize(broken_objective, n_trials=1, max_consecutive_failures=0)


def test_a_trial_that_completed_earlier_in_the_run_keeps_it_going(url: str) -> None:
    def works_once(params: Mapping[str, ParamValue], trial: Trial) -> float:
        return float(params["x"]) if trial.number == 0 else broken_objective(params)

    study = create_study("once", SPACE, storage=url, proposer="random", seed=0)
    assert study.optimize(works_once, n_trials=9).trials_run == 9
    assert [t.state for t in study.trials].count(TrialState.FAILED) == 8
