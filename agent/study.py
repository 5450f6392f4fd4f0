"""Studies: the ask/tell surface, and ``optimize``, which hands the loop to :mod:`agent.loop`.

``ask`` is the PROPOSE and VALIDATE stages, ending with the candidate *reserved* (stored as a running
trial) before anyone evaluates it; ``tell`` is the RECORD stage. Everything durable goes through a
:class:`~agent.storage.Storage`, so any number of threads and processes may work on one study; what this
process knows of the study is a :class:`~agent.cache.TrialCache`, refreshed incrementally.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.budget import Budget, BudgetAccount
from agent.cache import TrialCache
from agent.config import SearchConfig, StudyConfig
from agent.display import space_changes, trial_line
from agent.errors import BudgetExhausted, ConfigError
from agent.executors import Executor, make_executor
from agent.llm import LLMClient, ModelSpec
from agent.logs import TRIAL_LOGGER
from agent.loop import MAX_CONSECUTIVE_FAILURES, Callback, Coordinator, RunSummary
from agent.proposers import (
    PROPOSERS,
    Proposer,
    ProposerContext,
    RandomProposer,
    StudyView,
    make_proposer,
    space_problem,
    uses_model,
)
from agent.proposers.base import Direction
from agent.secrets import redact, redact_data
from agent.space import ParamValue, Space
from agent.steering import Steerable, Steering
from agent.storage import (
    DEFAULT_STORAGE,
    LLMCallRecord,
    ProposalConflict,
    Spend,
    Storage,
    StorageError,
    StudyExists,
    StudyRecord,
    TrialBudgetReached,
    open_storage,
)
from agent.trial import Proposal, Trial, TrialState
from agent.worker import WorkerLease
from tools.evaluation import (
    Evaluation,
    Evaluator,
    ObjectiveOutputError,
    StudyEvaluator,
    numeric_metrics,
    read_outcome,
)
from tools.function import FunctionEvaluator
from tools.processes import clean_leftovers

if TYPE_CHECKING:
    import pandas

    from agent.llm.gateway import ModelGateway
    from agent.llm.spec import Role
    from agent.storage.base import Clash

log = logging.getLogger(__name__)
trial_log = logging.getLogger(TRIAL_LOGGER)

DIRECTIONS: tuple[Direction, ...] = ("minimize", "maximize")
#: Reservations tried before a proposal is stored even though a concurrent trial came close to it.
_RESERVE_ATTEMPTS = 5
#: Two points closer than this in every unit-cube coordinate are the same point to a concurrent worker.
_NEAR = 1e-3
#: What a proposal is made from (:meth:`Study._seen`).
_Seen = tuple[int, Steering, StudyView, list[Mapping[str, ParamValue]]]


class Study(Steerable):
    """A named optimization problem and its trials. Build one with :func:`create_study` or :func:`load_study`."""

    def __init__(
        self,
        storage: Storage,
        record: StudyRecord,
        proposer: Proposer | None = None,
        llm: LLMClient | None = None,
        search: SearchConfig | None = None,
    ) -> None:
        self._storage = storage
        self._record = record
        self.space = Space.from_dict(record.space)
        self._proposer = proposer
        self._llm = llm
        #: How the study searches, typed: ``search`` when given (the caller's settings, secrets included), else
        #: the stored settings (any release's, never refused on reading; secrets such as a URL's password were
        #: scrubbed before storing).
        self.search = search if search is not None else SearchConfig.from_settings(record.settings)
        self._gateway: ModelGateway | None = None
        self._task_gateways: dict[object, ModelGateway] = {}  # by spec (or client object): one server per model
        self._gateway_lock = threading.Lock()
        self._run: BudgetAccount | None = None  # the budget of the current optimize call, and its clock
        self._cache = TrialCache(storage, record.id, self.space)
        self._lease: WorkerLease | None = None
        self._lease_lock = threading.Lock()
        # One reservation at a time in this process: a proposal is stored before the next is made.
        self._reserve_lock = threading.Lock()
        # Proposers keep state (a model's unused candidates, BO's last fit): one proposal at a time.
        self._propose_lock = threading.Lock()
        self._prepared: Future[tuple[Proposal, int]] | None = None
        #: Prepare the next proposal in the background after each reservation (``optimize`` sets it).
        self.prefetch = False

    @property
    def proposer(self) -> Proposer:
        """The proposer, built on first use: reading a study (``status``) never starts a model.

        A model that cannot be started (a missing package or key, a client object not passed again)
        leaves the study with its model-free partner, BO, and a warning saying why.
        """
        if self._proposer is None:
            search = self.search
            kind = search.proposer
            if search.model is not None and kind in PROPOSERS and uses_model(kind):
                try:
                    self._gateway = self._new_gateway(search.model, self._llm)
                except Exception as exc:  # ConfigError: a client object not passed again; LLMError: no backend
                    log.warning("the model %s cannot be used (%s); proposing with BO instead", search.model, exc)
                    kind = "bo"
            options = search.proposer_options if kind == search.proposer else {}
            context = ProposerContext(seed=self.seed, metric=self.metric, gateway=self._gateway)
            self._proposer = make_proposer(kind, options, context)
        return self._proposer

    def task_gateway(self, model: ModelSpec | str | LLMClient | None = None) -> ModelGateway:
        """The door for a model an evaluator calls (a task model scoring prompts on a dev set).

        Its calls are the study's: recorded with it, priced, and held to the same token, money, call and wall
        time budget as the proposer's, so one budget bounds the whole optimization. The study's own model is
        shared rather than started twice (one local server, one client). ``model`` is a spec or a client
        object; None means the study's model.

        Raises:
            ConfigError: no model given and the study has none, or a spec none of the accepted forms.
            LLMError: the backend cannot start (a missing package or file; the message says what to install).
        """
        if model is None:
            if self.search.model is None:
                raise ConfigError('the study has no model to evaluate with: name a task model, e.g. task_model="local"')
            model = self.search.model
        client: LLMClient | None = None
        if isinstance(model, LLMClient):
            client, spec = model, ModelSpec.of_client(model)
            key: object = id(model)
        else:
            spec = ModelSpec.parse(model)
            key = str(spec)
            # One model, one client: but a replay answers each role from its own recorded calls.
            if self.search.model is not None and key == str(self.search.model) and spec.backend != "replay":
                self.proposer  # noqa: B018 -- builds the study's own gateway, when its proposer uses the model
                if self._gateway is not None:
                    return self._gateway
                client = self._llm
        with self._gateway_lock:
            if key not in self._task_gateways:
                self._task_gateways[key] = self._new_gateway(spec, client, role="task")
            return self._task_gateways[key]

    def _new_gateway(self, spec: ModelSpec, client: LLMClient | None, role: Role = "optimizer") -> ModelGateway:
        from agent.llm import make_client
        from agent.llm.gateway import ModelGateway

        search = self.search
        client = client or make_client(spec, self._storage, search.api_key_env, role=role)
        gateway = ModelGateway(client, self._storage, self.id, free=spec.is_free, prices=search.price_table())
        gateway.budget = None if self._run is None else self._run.budget
        gateway.deadline = None if self._run is None else self._run.deadline
        return gateway

    def _gateways(self) -> list[ModelGateway]:
        own = [] if self._gateway is None else [self._gateway]
        return own + [g for g in self._task_gateways.values() if g is not self._gateway]

    @property
    def model_refused(self) -> str | None:
        """Why a model of the study (its own, or a task model) refused its last call under the current budget
        ("token budget", ...), or None."""
        return next((g.refused for g in self._gateways() if g.refused is not None), None)

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
        seed = self.search.seed
        return None if seed is None else int(seed)

    @property
    def proposer_kind(self) -> str:
        return self.search.proposer

    @property
    def model(self) -> str | None:
        """The ``model=`` setting (a spec such as ``"local"``), or None when the study has no model. For display:
        a password in the URL shows as ``***``."""
        return None if self.search.model is None else redact(str(self.search.model))

    @property
    def context(self) -> str | None:
        return self.search.context

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
        executor: str | Executor | None = None,
        prefetch: bool | None = None,
        max_consecutive_failures: int | None = MAX_CONSECUTIVE_FAILURES,
    ) -> RunSummary:
        """Run the loop until ``n_trials`` trials ran in this call or the budget is spent.

        Args:
            objective: ``f(params) -> float | dict`` (or ``f(params, trial)``), or an evaluator from
                ``tools`` (e.g. :class:`tools.CommandEvaluator`). Failures mark the trial failed; the
                study goes on. An evaluator that *raises* stops the run: its trial is marked failed, the
                other running trials finish, and the error is raised here.
            n_trials: trials to run in this call (all workers together); None for no such limit.
            budget: the study-wide trial, token and money totals, and this call's wall time.
            workers: trials evaluated at once.
            callbacks: called as ``callback(study, trial)`` after each trial is recorded.
            requeue_interrupted: evaluate again the points of trials whose process died.
            executor: where evaluations run: ``"inline"`` (this thread; the default for one worker),
                ``"threads"`` (the default for several), ``"processes"`` (spawned workers, for objectives
                that hold the GIL; the objective must be importable), or an :class:`~agent.executors.Executor`.
            prefetch: prepare the next proposal while trials run, so a model's latency overlaps evaluation.
                By default on with several workers or a model; off for a sequential model-free run, where
                the next proposal is better made once the running trial's result is known, and for a
                proposer whose ``prefetch`` attribute is False (``prompt``: it reflects on the last result).
            max_consecutive_failures: stop when this many trials of this call fail in a row with the same
                error before any of its trials completes (a typo in the objective, a missing package); None
                never stops for that.

        Raises:
            RepeatedFailure: ``max_consecutive_failures`` trials failed with the same error (its ``cause``);
                no further trial was started, the running ones finished and are kept.
            KeyboardInterrupt: after every running trial of this call was marked interrupted and every
                process it started was killed.
        """
        if n_trials is None and (budget is None or (budget.trials is None and budget.wall_time is None)):
            raise ValueError("optimize needs n_trials or a Budget with trials or wall_time, or it would never stop")
        if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
            raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        # A run killed by kill -9 left its trials' processes running and their folders behind: end them first.
        if cleaned := clean_leftovers():
            log.log(logging.WARNING if cleaned.processes else logging.INFO, "after a run that died: %s", cleaned)
        evaluator: Evaluator = objective if hasattr(objective, "evaluate") else FunctionEvaluator(objective)
        runner = make_executor(executor or ("threads" if workers > 1 else "inline"), workers)
        self.recover_interrupted(requeue=requeue_interrupted)
        if prefetch is None:  # a proposer that must see the last result (a reflection on it) says so
            prefetch = runner.max_workers > 1 or (self.model is not None and getattr(self.proposer, "prefetch", True))
        self.prefetch = prefetch
        self._set_run_budget(budget)
        hooks = evaluator if isinstance(evaluator, StudyEvaluator) else None
        try:
            if hooks is not None:
                hooks.start_run(self)
            coordinator = Coordinator(self, evaluator, runner, n_trials, self._run, callbacks, max_consecutive_failures)
            summary = coordinator.run()
        except BaseException:
            # An interrupted run does not wait for a proposal still being prepared; that proposal keeps the
            # run's budget until it is done, so a model call it makes is still checked.
            prepared, self._prepared = self._prepared, None
            if prepared is None or prepared.done():
                self._set_run_budget(None)
            raise
        finally:
            self.prefetch = False
        # A proposal still being prepared (the run stopped on a budget) is let finish: a thread left inside
        # BoTorch or a model call when the interpreter exits aborts it.
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            wait([prepared])
        self._set_run_budget(None)  # an ask() after the run is not held to this run's budget
        if summary.repeated_failure is not None:
            raise summary.repeated_failure
        if hooks is not None:
            hooks.end_run(self, summary)
        return summary

    def _set_run_budget(self, budget: Budget | None) -> None:
        """Hold the run (and the model) to ``budget`` from now on; its wall time starts now, so model calls and
        proposals end with the run. None: no run, no limits."""
        self._run = None if budget is None else BudgetAccount(budget)
        self._hold_model_to_run()

    def _hold_model_to_run(self) -> None:
        for gateway in self._gateways():
            gateway.budget = None if self._run is None else self._run.budget
            gateway.deadline = None if self._run is None else self._run.deadline

    # Ask / tell ---------------------------------------------------------------------------------------
    def ask(self, max_trials: int | None = None, *, last: bool = False) -> Trial:
        """Start a trial: an enqueued point if any, else the proposer's next candidate, stored as running.

        The candidate is reserved (stored) before it is returned. If a trial at (nearly) the same point was
        started or finished after the view the proposal was made from was read, the proposer is asked
        again with that trial in its view.

        Args:
            max_trials: the study's trial budget.
            last: no trial follows this one in the current run, so none is prepared in the background.

        Raises:
            TrialBudgetReached: the study already holds ``max_trials`` trials.
            BudgetExhausted: (``reason="wall time"``) the current run's wall time ran out while proposing.
        """
        worker_id = self._worker_id()
        with self._reserve_lock:
            self._cache.refresh()
            trial = None
            if self._cache.queued:
                trial = self._storage.start_trial(self.id, worker_id, None, max_trials)
            if trial is None:
                if max_trials is not None and self._cache.budgeted() >= max_trials:
                    # Known spent: a proposal (a model call of seconds) would only be refused by the storage.
                    raise TrialBudgetReached(max_trials)
                trial = self._reserve_proposal(worker_id, max_trials)
            self._cache.put(trial)
            budget_left = max_trials is None or self._cache.budgeted() < max_trials
            if self.prefetch and not last and budget_left:
                self._prepare_next()
            return trial

    def _reserve_proposal(self, worker_id: str, max_trials: int | None) -> Trial:
        """Store a proposal as a running trial, proposing again while concurrent trials clash with it.

        Processes sharing a seed (or a count-indexed Sobol sequence) propose in lockstep, so after a few
        clashes the proposal comes from an unseeded random draw instead, which breaks the lockstep. The
        last attempt is stored even if it clashes: a small discrete space may have no unused point left.
        """
        prepared, self._prepared = self._prepared, None
        for attempt in range(1, _RESERVE_ATTEMPTS + 1):
            if attempt > _RESERVE_ATTEMPTS - 2:
                unseeded = RandomProposer(seed=secrets.randbits(32))  # not the study's seed: out of lockstep
                proposal, since = self._propose(unseeded, "concurrent proposals clashed")
            elif prepared is not None:
                (proposal, since), prepared = self._take(prepared), None
                if not self.steering.contains(proposal.params):  # steered while it was being prepared
                    log.debug("the prepared proposal is outside the steered space; proposing again")
                    proposal, since = self._propose()
            else:
                proposal, since = self._propose()
            deadline = None if self._run is None else self._run.deadline
            if deadline is not None and time.monotonic() >= deadline:
                # Proposing took the rest of the run's time: starting the trial now (a training run of hours,
                # perhaps) would overrun the wall time by all of it.
                raise BudgetExhausted("the run's wall time ran out while the proposal was made", reason="wall time")
            clash = self._clash(proposal.params) if attempt < _RESERVE_ATTEMPTS else None
            try:
                trial = self._storage.start_trial(self.id, worker_id, proposal, max_trials, since, clash)
            except ProposalConflict:
                log.debug("proposal %s clashed with a concurrent trial; proposing again", dict(proposal.params))
                self._cache.refresh()
                continue
            assert trial is not None
            if proposal.artifacts:  # an edited program and its diff: kept with the trial that evaluates it
                digests = {name: self._storage.put_artifact(text) for name, text in proposal.artifacts.items()}
                for name, digest in digests.items():
                    self._storage.attach_artifact(self.id, trial.number, name, digest)
                trial = replace(trial, artifacts={**trial.artifacts, **digests})
            return trial
        raise AssertionError("unreachable: the last attempt does not check for clashes")

    def _take(self, prepared: Future[tuple[Proposal, int]]) -> tuple[Proposal, int]:
        try:
            return prepared.result()
        except Exception as exc:  # the background proposal failed: make one now
            log.debug("the prepared proposal failed (%s); proposing now", exc)
            return self._propose()

    def _prepare_next(self) -> None:
        future: Future[tuple[Proposal, int]] = Future()
        # What the proposal sees is taken now, not when the thread gets to it: the trial just reserved is then
        # always pending, never sometimes already told, so a replay asks the questions it recorded.
        seen = self._seen()

        def prepare() -> None:
            try:
                future.set_result(self._propose(seen=seen))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=prepare, name=f"tunesmith-propose-{self.name}", daemon=True).start()
        self._prepared = future

    def _seen(self) -> _Seen:
        """What a proposal is made from: the cache's sequence number, the steering, the view, pending points.

        The sequence number is read first: the view is then at least that recent, so the trials the
        reservation checks (those written after it) include every one the view lacks.
        """
        since = self._cache.seq()
        steering = self.steering  # read at every proposal: another process may have steered since
        view = StudyView(
            steering.current_space,
            self.direction,
            self._cache.finished(),
            seed=self.seed,
            context=self.context,
            known_keys=None if steering.pinned else self._cache.keys(),  # keys of the whole space
            read_artifact=self._storage.get_artifact,
            notes=steering.notes,
            pinned=steering.pinned,
        )
        return since, steering, view, [t.params for t in self._cache.running()]

    def _propose(
        self, proposer: Proposer | None = None, why: str | None = None, seen: _Seen | None = None
    ) -> tuple[Proposal, int]:
        """PROPOSE and VALIDATE one candidate from the cache's view; returns it and the view's sequence number.

        Args:
            proposer: another proposer than the study's (a fallback).
            why: the reason that other proposer is used, recorded as the rationale.
            seen: what to propose from, taken earlier (:meth:`_seen`); None: now.
        """
        with self._propose_lock:
            since, steering, view, pending = seen if seen is not None else self._seen()
            try:
                chosen = proposer or self.proposer
                proposal = chosen.propose(view, 1, pending)[0]
                if why is not None:
                    proposal = replace(proposal, rationale=f"{proposal.rationale} ({why})")
                params = steering.space.validate(steering.complete(proposal.params))  # a narrowed range holds
                return replace(proposal, params=params), since
            except Exception as exc:  # a proposer failure (or an invalid proposal) must never stop the study
                name = getattr(proposer or self._proposer, "name", self.proposer_kind)
                log.warning("proposer %r failed (%s); using a random candidate instead", name, exc)
                fallback = RandomProposer(self.seed).propose(view, 1, pending)[0]
                return Proposal(
                    steering.complete(fallback.params), fallback.proposer, f"fallback: {name} failed ({exc})"
                ), since

    def _clash(self, params: Mapping[str, ParamValue]) -> Clash:
        """Whether a concurrent trial's point is this one (same identity, or within :data:`_NEAR`)."""
        space = self.steering.space  # an added choice is not in the stored space
        key = space.key(params)
        point = space.encode(params) if space.n_dims else None
        texts = {name: params[name] for name, _ in space.text_items()}

        def clash(other: Mapping[str, ParamValue]) -> bool:
            try:
                if space.key(other) == key:
                    return True
                if point is None or any(other[name] != value for name, value in texts.items()):
                    return False
                return bool(np.max(np.abs(space.encode(other) - point)) < _NEAR)
            except (KeyError, TypeError, ValueError):  # a point from before the space changed
                return False

        return clash

    def tell(
        self,
        trial: Trial | int,
        value: float | Mapping[str, Any] | Evaluation | None = None,
        *,
        state: TrialState | str = TrialState.COMPLETE,
        error: str | None = None,
        feedback: str | None = None,
        interrupted: bool = False,
    ) -> Trial:
        """Record a trial's outcome.

        Args:
            trial: the trial from :meth:`ask`, or its number.
            value: a number, a dict of metrics holding the study's target, or an :class:`Evaluation`.
            state: ``"complete"`` (default), ``"failed"`` or ``"pruned"``.
            error: why it failed.
            feedback: what the evaluation printed, kept for the user and the model.
            interrupted: the trial was stopped before it produced anything (it does not count against
                the trial budget).

        A value that is not a finite number (NaN, inf, a string, a dict without the target) marks the
        trial failed with the reason, instead of raising: one bad evaluation must not end a study.

        The recorded trial is logged at INFO on the ``agent.trials`` logger, one line
        (:func:`agent.display.trial_line`); an interrupted one is not, since the run says why it stopped.
        """
        number = trial if isinstance(trial, int) else trial.number
        state = TrialState(state)
        if isinstance(value, Evaluation):
            error = value.error or error
            feedback = value.feedback or feedback
            if value.error is not None:
                state = TrialState.FAILED
            elif value.pruned:
                state = TrialState.PRUNED
            for name, content in value.artifacts.items():  # before the trial is finished: readers see them with it
                self.add_artifact(number, name, content)
            value = value.output
        metrics: dict[str, float] = {}
        result: float | None = None
        if state is TrialState.COMPLETE:
            try:
                result, metrics = read_outcome(value, self.metric)
            except ObjectiveOutputError as exc:  # said in the trial's line below
                state, error = TrialState.FAILED, str(exc)
        elif state is TrialState.PRUNED and isinstance(value, Mapping):
            metrics = numeric_metrics(value)  # what was measured before it stopped; no value to compete with
        elif state is TrialState.RUNNING:
            raise ValueError("tell needs a finished state: complete, failed or pruned")
        finished = self._storage.finish_trial(
            self.id, number, state, result, metrics, error, feedback, interrupted=interrupted
        )
        self._cache.put(finished)
        if not finished.interrupted:
            trial_log.info("%s", trial_line(finished))
        return finished

    def enqueue(self, params: Mapping[str, ParamValue], once: bool = False) -> bool:
        """Evaluate ``params`` before anything the proposer suggests (e.g. a known good default).

        Missing Text/Code parameters take their defaults. With ``once``, a point this study has already
        had enqueued (evaluated or not) is skipped, even by runs started at the same moment: what a job
        file lists is enqueued by every run of it, resumed ones included. Returns whether it was queued.

        Raises:
            InvalidCandidate: ``params`` does not fit the space; every problem is listed.
        """
        candidate = {**self.space.defaults(), **params}
        return self._storage.enqueue(self.id, self.space.validate(candidate), once=once)

    def report(self, trial: Trial | int, step: int, value: float) -> None:
        """Store an intermediate value of a running trial (for pruning and learning curves)."""
        self._storage.report(self.id, trial if isinstance(trial, int) else trial.number, step, value)

    def set_user_attr(self, trial: Trial | int, key: str, value: Any) -> None:
        """Attach a JSON value to a trial."""
        self._storage.set_user_attr(self.id, trial if isinstance(trial, int) else trial.number, key, value)

    def add_artifact(self, trial: Trial | int, name: str, content: bytes | str, media_type: str = "text/plain") -> str:
        """Store ``content`` (once, however many trials share it) and name it on a trial; returns its digest."""
        digest = self._storage.put_artifact(content, media_type)
        self._storage.attach_artifact(self.id, trial if isinstance(trial, int) else trial.number, name, digest)
        return digest

    def artifact(self, trial: Trial | int, name: str) -> bytes:
        """The content of a trial's artifact ``name``.

        Raises:
            KeyError: the trial has no artifact of that name.
        """
        number = trial if isinstance(trial, int) else trial.number
        self._cache.refresh()
        found = self._cache.get(number)
        if found is None or name not in found.artifacts:
            raise KeyError(f"trial {number} has no artifact {name!r}")
        return self._storage.get_artifact(found.artifacts[name])

    def recover_interrupted(self, requeue: bool = False) -> list[int]:
        """Mark trials left running by dead processes as interrupted; returns their numbers."""
        numbers = self._storage.recover_interrupted(self.id, requeue)
        if numbers:
            log.warning("trials %s were interrupted by a process that died; marked interrupted", numbers)
        return numbers

    def close(self) -> None:
        """Stop this process's heartbeat for the study and release the database connections.

        Running trials of this process then look abandoned to other workers, so close a study only when
        none of its trials is running here. Optional: exiting the process has the same effect.
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
        """Every trial, by number (fetching only what changed since the last look)."""
        self._cache.refresh()
        return self._cache.trials

    @property
    def queued(self) -> int:
        """Enqueued points still waiting for a trial (they run before any proposal)."""
        self._cache.refresh()
        return self._cache.queued

    @property
    def budgeted_trials(self) -> int:
        """Trials that count against the trial budget: all but the interrupted ones (kept counted, not recounted)."""
        self._cache.refresh()
        return self._cache.budgeted()

    @property
    def best_trial(self) -> Trial:
        """The best complete trial.

        Raises:
            ValueError: no trial has completed yet.
        """
        self._cache.refresh()
        best = StudyView(self.space, self.direction, self._cache.finished()).incumbent()
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
    proposer_options: Mapping[str, Any] | None = None,
) -> Study:
    """Create a study (or, with ``load_if_exists``, open the one of that name if it matches).

    An existing study must have the same space, direction and metric; its search settings (proposer, model,
    seed, context, prices) are updated to the ones given, so a resumed job uses what its job file says now.

    Args:
        name: unique within the storage.
        space: what to search.
        direction: "minimize" or "maximize".
        storage: a URL (default ``sqlite:///tunesmith.db``; ``postgresql://...``; ``memory:``) or a :class:`Storage`.
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
    if not isinstance(space, Space):
        raise ValueError(f"space must be a Space, got {type(space).__name__}")
    # Every argument checked at once, each faulty one named (OptionsError: a ConfigError, a ValueError).
    config = StudyConfig.from_kwargs(
        name,
        direction=direction,
        metric=metric,
        storage=storage,
        proposer=proposer,
        proposer_options=proposer_options,
        model=model,
        seed=seed,
        context=context,
        api_key_env=api_key_env,
        prices=prices,
    )
    llm = None if model is None or isinstance(model, str | ModelSpec) else model
    return study_from_config(
        config,
        space,
        storage=storage if isinstance(storage, Storage) else None,
        client=llm,
        load_if_exists=load_if_exists,
    )


#: The settings key holding what a study's job file evaluates (ignored when the settings are read back).
OBJECTIVE_KEY = "objective"


def study_from_config(
    config: StudyConfig,
    space: Space,
    *,
    storage: Storage | None = None,
    client: LLMClient | None = None,
    load_if_exists: bool = False,
    objective: str | None = None,
) -> Study:
    """Create (or, with ``load_if_exists``, reopen) the study ``config`` describes: what create_study and the
    CLI share. ``storage`` overrides ``config.storage`` with an open Storage; ``client`` is the model object
    when ``config.search.model`` records one (``object:<name>``); ``objective`` says what is evaluated (a job
    file's command), stored so that reopening the study for another objective is warned about."""
    name, direction, metric = config.name, config.direction, config.metric
    if (problem := space_problem(config.search.proposer, space)) is not None:
        raise ConfigError(problem, field="proposer")
    db = storage if storage is not None else open_storage(config.storage, create=True)
    llm = client
    settings = config.search.to_settings()
    if objective is not None:
        settings[OBJECTIVE_KEY] = objective
    existing = db.get_study(name)
    if existing is None:
        try:
            record = db.create_study(name, direction, metric, space.to_dict(), settings)
            return Study(db, record, llm=llm, search=config.search)
        except StudyExists:  # another thread or process created it a moment ago
            existing = db.get_study(name)
            assert existing is not None
    if not load_if_exists:
        raise StudyExists(
            f"a study named {name!r} already exists in {db.url}; use load_study({name!r}) to continue it, "
            "or load_if_exists=True"
        )
    _check_same(existing, space, direction, metric)
    before = existing.settings.get(OBJECTIVE_KEY)
    if objective is not None and before is not None and before != redact_data(objective):
        log.warning(
            "study %r was run with another objective (%s); this run evaluates %s. Their results are mixed in one "
            "study: give this job another study name to keep them apart",
            name,
            before,
            objective,
        )
    # How to search may change between runs (a new model, another proposer); what is searched may not.
    if existing.settings != redact_data(settings):
        existing = db.update_settings(existing.id, settings)
    return Study(db, existing, llm=llm, search=config.search)


def _check_same(existing: StudyRecord, space: Space, direction: str, metric: str | None) -> None:
    """Refuse to reopen a study for another problem; the message names each difference, parameter by
    parameter, so that a bound edited by mistake is found without comparing two job files."""
    differences = []
    if changes := space_changes(Space.from_dict(existing.space), space):
        differences.append(f"space ({'; '.join(changes)})")
    if existing.direction != direction:
        differences.append(f"direction (stored: {existing.direction})")
    if existing.metric != metric:
        differences.append(f"metric (stored: {existing.metric})")
    if differences:
        raise ValueError(
            f"study {existing.name!r} exists with a different {', '.join(differences)}; give the new study another name"
        )


def load_study(name: str, storage: Storage | str = DEFAULT_STORAGE, model: LLMClient | None = None) -> Study:
    """Open an existing study.

    Args:
        model: the client object a study was created with (an object cannot be stored, only its name);
            without it such a study proposes with BO and says so.

    Raises:
        StorageError: no study of that name; the message lists those that exist.
    """
    db = open_storage(storage, create=False)
    record = db.get_study(name)
    if record is None:
        names = [s.name for s in db.list_studies()]
        known = f"studies there: {', '.join(names)}" if names else "it holds no study"
        raise StorageError(f"no study named {name!r} in {db.url} ({known})")
    return Study(db, record, llm=model)
