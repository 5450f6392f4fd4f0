"""Studies: the optimization loop and the ask/tell surface around it.

The loop is :meth:`Study.optimize`: PROPOSE and VALIDATE (:meth:`Study.ask`), EVALUATE (an evaluator
from ``tools/``), RECORD (:meth:`Study.tell`). Everything durable goes through :mod:`agent.storage`, so
any number of threads and processes may work on one study.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agent.budget import Budget, BudgetAccount
from agent.llm import LLMClient, check_model_spec, is_local_spec
from agent.llm.pricing import cost_usd
from agent.proposers import PROPOSER_KINDS, Proposer, RandomProposer, StudyView, make_proposer
from agent.proposers.base import Direction
from agent.space import ParamValue, Space
from agent.storage import (
    DEFAULT_STORAGE,
    LLMCallRecord,
    Spend,
    Storage,
    StorageError,
    StudyRecord,
    TrialBudgetReached,
)
from agent.trial import INTERRUPTED, Proposal, Trial, TrialState
from agent.worker import WorkerLease
from tools.evaluation import Evaluation, Evaluator, ObjectiveOutputError, read_outcome
from tools.function import FunctionEvaluator

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

DIRECTIONS: tuple[Direction, ...] = ("minimize", "maximize")
Callback = Callable[["Study", Trial], None]


@dataclass(frozen=True)
class RunSummary:
    """What one :meth:`Study.optimize` call did and why it stopped."""

    trials_run: int
    stopped_because: str


class Study:
    """A named optimization problem and its trials. Build one with :func:`create_study` or :func:`load_study`."""

    def __init__(
        self, storage: Storage, record: StudyRecord, proposer: Proposer | None = None, llm: LLMClient | None = None
    ) -> None:
        self._storage = storage
        self._record = record
        self.space = Space.from_dict(record.space)
        self._proposer = proposer
        self._llm = llm
        self._lease: WorkerLease | None = None
        self._lease_lock = threading.Lock()
        # Proposers keep state (a model's unused candidates, BO's last fit): one proposal at a time.
        self._propose_lock = threading.Lock()

    @property
    def proposer(self) -> Proposer:
        """The proposer, built on first use: reading a study (``status``) never starts a model."""
        if self._proposer is None:
            llm = self._llm
            spec = self._record.settings.get("model")
            if llm is None and spec and self.proposer_kind in ("auto", "llm"):
                from agent.llm import make_client

                llm = make_client(spec, self._storage, self._record.settings.get("api_key_env"))
            self._proposer = make_proposer(self.proposer_kind, self.seed, llm, self._record_call, self.metric)
        return self._proposer

    def _record_call(self, call: LLMCallRecord) -> int:
        prices = {k: (float(v[0]), float(v[1])) for k, v in (self._record.settings.get("prices") or {}).items()}
        usd = (
            0.0
            if is_local_spec(self.model)
            else cost_usd(call.model, call.prompt_tokens, call.completion_tokens, prices)
        )
        return self._storage.record_llm_call(self.id, replace(call, usd=usd))

    def spend(self) -> Spend:
        """Tokens and money the study's model calls have used so far."""
        return self._storage.spend(self.id)

    @property
    def llm_calls(self) -> list[LLMCallRecord]:
        """Every model call, oldest first: messages, reply, parse result or error, tokens, latency, trials."""
        return self._storage.llm_calls(self.id)

    # Identity -----------------------------------------------------------------------------------------
    @property
    def id(self) -> int:
        """The study's key in its storage."""
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def direction(self) -> Direction:
        return "maximize" if self._record.direction == "maximize" else "minimize"

    @property
    def metric(self) -> str | None:
        return self._record.metric

    @property
    def seed(self) -> int | None:
        seed = self._record.settings.get("seed")
        return None if seed is None else int(seed)

    @property
    def proposer_kind(self) -> str:
        return str(self._record.settings.get("proposer", "auto"))

    @property
    def model(self) -> str | None:
        """The ``model=`` setting (a spec such as ``"local"``), or None when the study has no model."""
        return self._record.settings.get("model")

    @property
    def context(self) -> str | None:
        return self._record.settings.get("context")

    @property
    def storage(self) -> Storage:
        return self._storage

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, direction={self.direction!r}, storage={self._storage.url!r})"

    # The loop -----------------------------------------------------------------------------------------
    def optimize(
        self,
        objective: Evaluator | Callable[..., Any],
        n_trials: int | None = None,
        budget: Budget | None = None,
        workers: int = 1,
        callbacks: Sequence[Callback] = (),
        requeue_interrupted: bool = False,
    ) -> RunSummary:
        """Run the loop until ``n_trials`` trials ran in this call or the budget is spent.

        Args:
            objective: ``f(params) -> float | dict`` (or ``f(params, trial)``), or an evaluator from
                ``tools`` (e.g. :class:`tools.CommandEvaluator`). Failures mark the trial failed; the
                study goes on.
            n_trials: trials to run in this call (all workers together); None for no such limit.
            budget: the study-wide trial, token and money totals, and this call's wall time.
            workers: trials evaluated at once, in threads of this process.
            callbacks: called as ``callback(study, trial)`` after each trial is recorded.
            requeue_interrupted: evaluate again the points of trials whose process died.
        """
        if n_trials is None and (budget is None or (budget.trials is None and budget.wall_time is None)):
            raise ValueError("optimize needs n_trials or a Budget with trials or wall_time, or it would never stop")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        evaluator: Evaluator = objective if hasattr(objective, "evaluate") else FunctionEvaluator(objective)
        account = BudgetAccount(budget)
        self.recover_interrupted(requeue=requeue_interrupted)
        slots = _Slots(n_trials)
        stop = threading.Event()
        reasons: list[str] = []
        ran: list[Trial] = []

        def work() -> None:
            while not stop.is_set():
                reason = account.exhausted(self.spend() if account.counts_spend else None) or slots.take()
                if reason:
                    reasons.append(reason)
                    return
                try:
                    trial = self.ask(max_trials=account.budget.trials)
                except TrialBudgetReached:
                    reasons.append("trial budget")
                    return
                finished = self._evaluate_and_tell(evaluator, trial)
                ran.append(finished)
                for callback in callbacks:
                    callback(self, finished)

        if workers == 1:
            work()
        else:
            threads = [threading.Thread(target=work, name=f"tunesmith-worker-{i}") for i in range(workers)]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    thread.join()
            except BaseException:
                stop.set()
                raise
        return RunSummary(len(ran), reasons[0] if reasons else "stopped")

    def _evaluate_and_tell(self, evaluator: Evaluator, trial: Trial) -> Trial:
        try:
            evaluation = evaluator.evaluate(trial.params, trial)
        except BaseException:
            # Ctrl-C or a bug in an evaluator: the trial produced nothing; say so before leaving.
            self.tell(trial, state=TrialState.FAILED, error=INTERRUPTED)
            raise
        return self.tell(trial, evaluation)

    # Ask / tell ---------------------------------------------------------------------------------------
    def ask(self, max_trials: int | None = None) -> Trial:
        """Start a trial: an enqueued point if any, else the proposer's next candidate.

        Raises:
            TrialBudgetReached: the study already holds ``max_trials`` trials.
        """
        worker_id = self._worker_id()
        trial = self._storage.start_trial(self._record.id, worker_id, None, max_trials)
        if trial is not None:
            return trial
        trial = self._storage.start_trial(self._record.id, worker_id, self._propose(), max_trials)
        assert trial is not None
        return trial

    def _propose(self) -> Proposal:
        with self._propose_lock:
            return self._propose_unlocked()

    def _propose_unlocked(self) -> Proposal:
        trials = self.trials
        view = StudyView(
            self.space,
            self.direction,
            [t for t in trials if t.state.is_finished],
            seed=self.seed,
            context=self.context,
        )
        pending = [t.params for t in trials if t.state is TrialState.RUNNING]
        try:
            proposal = self.proposer.propose(view, 1, pending)[0]
            return replace(proposal, params=self.space.validate(proposal.params))
        except Exception as exc:  # a proposer failure (or an invalid proposal) must never stop the study
            log.warning("proposer %r failed (%s); using a random candidate instead", self.proposer.name, exc)
            fallback = RandomProposer(self.seed).propose(view, 1, pending)[0]
            return Proposal(fallback.params, fallback.proposer, f"fallback: {self.proposer.name} failed ({exc})")

    def tell(
        self,
        trial: Trial | int,
        value: float | Mapping[str, Any] | Evaluation | None = None,
        *,
        state: TrialState | str = TrialState.COMPLETE,
        error: str | None = None,
        feedback: str | None = None,
    ) -> Trial:
        """Record a trial's outcome.

        Args:
            trial: the trial from :meth:`ask`, or its number.
            value: a number, a dict of metrics holding the study's target, or an :class:`Evaluation`.
            state: ``"complete"`` (default), ``"failed"`` or ``"pruned"``.
            error: why it failed.
            feedback: what the evaluation printed, kept for the user and the model.

        A value that is not a finite number (NaN, inf, a string, a dict without the target) marks the
        trial failed with the reason, instead of raising: one bad evaluation must not end a study.
        """
        number = trial if isinstance(trial, int) else trial.number
        state = TrialState(state)
        if isinstance(value, Evaluation):
            error = value.error or error
            feedback = value.feedback or feedback
            if value.error is not None:
                state = TrialState.FAILED
            value = value.output
        metrics: dict[str, float] = {}
        result: float | None = None
        if state is TrialState.COMPLETE:
            try:
                result, metrics = read_outcome(value, self.metric)
            except ObjectiveOutputError as exc:
                log.warning("trial %d failed: %s", number, exc)
                state, error = TrialState.FAILED, str(exc)
        elif state is TrialState.RUNNING:
            raise ValueError("tell needs a finished state: complete, failed or pruned")
        return self._storage.finish_trial(self._record.id, number, state, result, metrics, error, feedback)

    def enqueue(self, params: Mapping[str, ParamValue]) -> None:
        """Evaluate ``params`` before anything the proposer suggests (e.g. a known good default).

        Missing Text/Code parameters take their defaults.

        Raises:
            InvalidCandidate: ``params`` does not fit the space; every problem is listed.
        """
        candidate = {**self.space.defaults(), **params}
        self._storage.enqueue(self._record.id, self.space.validate(candidate))

    def recover_interrupted(self, requeue: bool = False) -> list[int]:
        """Mark trials left running by dead processes as failed ("interrupted"); returns their numbers."""
        numbers = self._storage.recover_interrupted(self._record.id, requeue)
        if numbers:
            log.warning("trials %s were interrupted by a process that died; marked failed", numbers)
        return numbers

    def close(self) -> None:
        """Stop this process's heartbeat for the study and release the database connections.

        Running trials of this process then look abandoned to other workers once the heartbeat goes stale,
        so close a study only when none of its trials is running here. Optional: exiting the process has
        the same effect.
        """
        with self._lease_lock:
            if self._lease is not None:
                self._lease.stop()
                self._lease = None
        self._storage.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _worker_id(self) -> str:
        with self._lease_lock:
            if self._lease is None:
                self._lease = WorkerLease(self._storage)
            return self._lease.id

    # Results ------------------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every trial, by number."""
        return self._storage.trials(self._record.id)

    @property
    def best_trial(self) -> Trial:
        """The best complete trial.

        Raises:
            ValueError: no trial has completed yet.
        """
        best = StudyView(self.space, self.direction, self.trials).incumbent()
        if best is None:
            raise ValueError(f"study {self.name!r} has no complete trial yet")
        return best

    @property
    def best_params(self) -> dict[str, ParamValue]:
        return dict(self.best_trial.params)

    @property
    def best_value(self) -> float:
        value = self.best_trial.value
        assert value is not None
        return value

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per trial: number, state, value, ``params_<name>``, ``metrics_<name>``, provenance, times."""
        try:
            import pandas
        except ImportError:
            raise ImportError("to_dataframe needs pandas: pip install pandas") from None
        rows = []
        for t in self.trials:
            rows.append(
                {
                    "number": t.number,
                    "state": t.state.value,
                    "value": t.value,
                    **{f"params_{k}": v for k, v in t.params.items()},
                    **{f"metrics_{k}": v for k, v in t.metrics.items()},
                    "proposer": t.proposer,
                    "rationale": t.rationale,
                    "error": t.error,
                    "started_at": t.started_at,
                    "finished_at": t.finished_at,
                    "duration_s": t.duration_s,
                }
            )
        return pandas.DataFrame(rows)


class _Slots:
    """A thread-safe countdown of the trials one ``optimize`` call may still start."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> str | None:
        """Take a slot; returns why not when none is left."""
        with self._lock:
            if self._limit is not None and self._taken >= self._limit:
                return "n_trials"
            self._taken += 1
            return None


def _open(storage: Storage | str, create: bool) -> Storage:
    return storage if isinstance(storage, Storage) else Storage(storage, create=create)


def create_study(
    name: str,
    space: Space,
    direction: str = "minimize",
    storage: Storage | str = DEFAULT_STORAGE,
    proposer: str = "auto",
    model: str | LLMClient | None = None,
    metric: str | None = None,
    seed: int | None = None,
    context: str | None = None,
    load_if_exists: bool = False,
    api_key_env: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> Study:
    """Create a study (or, with ``load_if_exists``, open the one of that name if it matches).

    An existing study must have the same space, direction and metric; its search settings (proposer, model,
    seed, context, prices) are updated to the ones given, so a resumed job uses what its job file says now.

    Args:
        name: unique within the storage.
        space: what to search.
        direction: "minimize" or "maximize".
        storage: a SQLAlchemy URL (default ``sqlite:///tunesmith.db``) or a :class:`Storage`.
        proposer: "auto" (the model and BO as a portfolio; plain BO without a model), "llm", "bo" or "random".
        model: ``"local"``, ``"gguf:/path"``, ``"openai:<model>"``, ``"http://host:port/v1#<model>"``,
            ``"hf:/path"``, ``"replay:<study>"``, or an :class:`agent.llm.LLMClient`; None for no model.
            Nothing is started until the first proposal.
        metric: the target, when the objective returns a dict of metrics.
        seed: makes the proposers reproducible.
        context: a description of the task, for the model.
        api_key_env: the environment variable holding the API key (the key itself is never stored).
        prices: USD per million (prompt, completion) tokens by model name, for money budgets.

    Raises:
        ValueError: an argument is invalid, or the existing study differs in space or direction.
        StorageError: the name is taken and ``load_if_exists`` is False.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a study needs a non-empty name")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if not isinstance(space, Space):
        raise ValueError(f"space must be a Space, got {type(space).__name__}")
    if proposer not in PROPOSER_KINDS:
        raise ValueError(f"unknown proposer {proposer!r}; expected one of {', '.join(PROPOSER_KINDS)}")
    if proposer == "llm" and model is None:
        raise ValueError('proposer "llm" needs a model, e.g. model="local"')
    if isinstance(model, str):
        check_model_spec(model)
    db = _open(storage, create=True)
    llm = None if model is None or isinstance(model, str) else model
    existing = db.get_study(name)
    if existing is not None:
        if not load_if_exists:
            raise StorageError(
                f"a study named {name!r} already exists in {db.url}; use load_study({name!r}) to continue it, "
                "or load_if_exists=True"
            )
        _check_same(existing, space, direction, metric)
    settings = {
        "proposer": proposer,
        "seed": seed,
        "context": context,
        "model": model if isinstance(model, str) or model is None else model.model,
        "api_key_env": api_key_env,
        "prices": {k: list(v) for k, v in (prices or {}).items()},
    }
    if existing is not None:
        # How to search may change between runs (a new model, another proposer); what is searched may not.
        if existing.settings != settings:
            existing = db.update_settings(existing.id, settings)
        return Study(db, existing, llm=llm)
    return Study(db, db.create_study(name, direction, metric, space.to_dict(), settings), llm=llm)


def _check_same(existing: StudyRecord, space: Space, direction: str, metric: str | None) -> None:
    differences = []
    if Space.from_dict(existing.space) != space:
        differences.append("space")
    if existing.direction != direction:
        differences.append(f"direction (stored: {existing.direction})")
    if existing.metric != metric:
        differences.append(f"metric (stored: {existing.metric})")
    if differences:
        raise ValueError(
            f"study {existing.name!r} exists with a different {', '.join(differences)}; give the new study another name"
        )


def load_study(name: str, storage: Storage | str = DEFAULT_STORAGE) -> Study:
    """Open an existing study.

    Raises:
        StorageError: no study of that name; the message lists those that exist.
    """
    db = _open(storage, create=False)
    record = db.get_study(name)
    if record is None:
        names = [s.name for s in db.list_studies()]
        known = f"studies there: {', '.join(names)}" if names else "it holds no study"
        raise StorageError(f"no study named {name!r} in {db.url} ({known})")
    return Study(db, record)
