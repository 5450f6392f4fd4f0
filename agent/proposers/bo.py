"""Gaussian-process Bayesian optimization with BoTorch: the classical fallback and the model's partner.

How the space meets the GP: every candidate is encoded into the unit cube (:meth:`Space.encode`: floats
and integers one dimension each, log scales applied, categoricals one-hot). The GP is BoTorch's
``SingleTaskGP`` with a Matern-5/2 ARD kernel under BoTorch's dimension-scaled lengthscale prior and
standardized outcomes. The acquisition function is LogEI for a single proposal and qLogNEI for batches
and whenever other workers have pending points, so parallel workers do not pile onto one spot.

Discrete parameters are handled in two ways. When the whole space is discrete and small enough to list,
every unseen point is scored (``optimize_acqf_discrete``): exact, and it never proposes a duplicate.
Otherwise the acquisition function is optimized over the continuous relaxation, the best restarts are
rounded to valid candidates, and the rounded points are scored again, so the pick is the best *valid*
candidate rather than the best relaxed one.

Failed trials are imputed with the worst observed value so the model steers away from them. Any failure
of the model or the optimizer falls back to Sobol sampling with the reason in the rationale: the study
never stops because of the proposer.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from agent.logs import announce_if_slow
from agent.proposers.base import SeenPoints, StudyView
from agent.proposers.random import RandomProposer
from agent.proposers.registry import PROPOSERS, ProposerContext
from agent.registry import Options
from agent.space import Categorical, Float, Int, ParamValue, Space
from agent.trial import Proposal, TrialState

if TYPE_CHECKING:
    import torch
    from botorch.acquisition import AcquisitionFunction
    from botorch.models import SingleTaskGP

log = logging.getLogger(__name__)

#: Fully discrete spaces with at most this many points are scored exhaustively.
MAX_ENUMERATION = 4096


def initial_design_size(space: Space) -> int:
    """Sobol points before the GP takes over: one more than the number of numeric parameters, 4 to 10."""
    return min(max(len(space.numeric_items()) + 1, 4), 10)


class BOProposer:
    """BoTorch GP-BO on the unit cube. See the module docstring for the choices made.

    Args:
        seed: makes proposals reproducible (with the study's trials).
        num_restarts, raw_samples: the acquisition optimizer's effort (BoTorch's ``optimize_acqf``).
    """

    name = "bo"

    def __init__(self, seed: int | None = None, num_restarts: int = 8, raw_samples: int = 256) -> None:
        self.seed = seed
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self._sobol = RandomProposer(seed)
        # Hyperparameters of the last fit, to warm-start the next one (same dimension only).
        self._warm_state: dict[str, Any] | None = None

    def propose(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        view = view.inside_space()  # trials outside a narrowed space stay in history, not in the fit
        space = view.space
        observed = [t for t in view.trials if t.state in (TrialState.COMPLETE, TrialState.FAILED)]
        if space.n_dims == 0 or len(view.completed) < 2 or len(observed) < initial_design_size(space):
            return self._sobol_points(view, n, pending, "initial Sobol design")
        try:
            # A fit over hundreds of trials, or on a machine the objective keeps busy, can take a while.
            with announce_if_slow(f"fitting the GP to {len(observed)} trials and choosing a candidate", logger=log):
                return self._propose_with_gp(view, n, pending)
        except Exception as exc:  # a singular kernel, a NaN, an optimizer failure...
            log.warning("BO failed (%s: %s); proposing Sobol points instead", type(exc).__name__, exc)
            return self._sobol_points(view, n, pending, f"fallback: GP failed ({type(exc).__name__})")

    def _sobol_points(
        self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]], rationale: str
    ) -> list[Proposal]:
        return [Proposal(p.params, self.name, rationale) for p in self._sobol.propose(view, n, pending)]

    # ------------------------------------------------------------------------------------------------------
    def _propose_with_gp(self, view: StudyView, n: int, pending: Sequence[Mapping[str, ParamValue]]) -> list[Proposal]:
        import torch

        space = view.space
        seed = (view.seed if self.seed is None else self.seed) or 0
        with torch.random.fork_rng():
            torch.manual_seed(seed + len(view.trials) + len(pending))
            train_x, train_y = training_data(view)
            model = self._fit(train_x, train_y)
            pending_x = _tensor([space.encode(p) for p in pending], space.n_dims)
            acquisition = _acquisition(model, train_x, train_y, pending_x, batch=n > 1)
            seen = SeenPoints.of(view, pending)
            chosen = self._select(space, acquisition, n, seen, view.text_values())
        kind = "qLogNEI" if n > 1 or len(pending) else "LogEI"
        rationale = f"GP-BO ({kind}, {len(train_y)} observations)"
        proposals = [Proposal(c, self.name, rationale) for c in chosen]
        if len(proposals) < n:  # nothing unseen left near the optimum: fill up with Sobol points
            proposals += self._sobol_points(view, n - len(proposals), [*pending, *chosen], "Sobol: space exhausted")
        return proposals

    def _fit(self, train_x: torch.Tensor, train_y: torch.Tensor) -> SingleTaskGP:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
        from gpytorch.mlls import ExactMarginalLogLikelihood

        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=train_x.shape[-1], use_rbf_kernel=False)
        model = SingleTaskGP(train_x, train_y, covar_module=covar, outcome_transform=Standardize(m=1))
        if self._warm_state is not None and self._warm_state["dims"] == train_x.shape[-1]:
            model.load_state_dict(self._warm_state["params"], strict=False)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        self._warm_state = {
            "dims": train_x.shape[-1],
            "params": {k: v for k, v in model.state_dict().items() if "raw_" in k},
        }
        return model

    def _select(
        self,
        space: Space,
        acquisition: AcquisitionFunction,
        n: int,
        seen: SeenPoints,
        text: Mapping[str, str],
    ) -> list[dict[str, ParamValue]]:
        """The ``n`` best unseen valid candidates under ``acquisition``."""
        import torch
        from botorch.optim import optimize_acqf, optimize_acqf_discrete

        grid = _discrete_grid(space)
        if grid is not None:
            unseen = [c for c in ({**g, **text} for g in grid) if seen.add(c)]
            if not unseen:
                return []
            choices = _tensor([space.encode(c) for c in unseen], space.n_dims)
            picked, _ = optimize_acqf_discrete(acquisition, q=min(n, len(unseen)), choices=choices)
            return [space.decode(x.numpy(), text) for x in picked]

        bounds = torch.stack([torch.zeros(space.n_dims), torch.ones(space.n_dims)]).double()
        relaxed, _ = optimize_acqf(
            acquisition,
            bounds=bounds,
            q=n,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            return_best_only=False,
        )
        # relaxed: (num_restarts, n, d). Round every restart's points to valid candidates, rank the rounded
        # points by the acquisition value they actually have, then improve each by a discrete local search
        # (a relaxed optimum often rounds to the wrong category or the wrong side of an integer).
        points = relaxed.reshape(-1, space.n_dims).numpy()
        starts = _unseen(space, [space.decode(x, text) for x in points], seen)
        if not starts:
            # Every restart rounded onto a tried point (typically a corner of the box): look around them.
            rng = np.random.default_rng(len(points))
            nearby = np.clip(
                points[rng.integers(len(points), size=256)] + rng.normal(0, 0.05, (256, space.n_dims)), 0, 1
            )
            starts = _unseen(space, [space.decode(x, text) for x in nearby], seen)
        if not starts:
            return []
        scores = _score(space, acquisition, starts)
        chosen: list[dict[str, ParamValue]] = []
        for i in np.argsort(-scores):
            candidate = _climb(space, acquisition, starts[i], float(scores[i]), seen)
            if seen.add(candidate):
                chosen.append(candidate)
            if len(chosen) == n:
                break
        return chosen


def _unseen(space: Space, candidates: list[dict[str, ParamValue]], seen: SeenPoints) -> list[dict[str, ParamValue]]:
    """``candidates`` without duplicates and without points already seen."""
    return [c for c in {space.key(c): c for c in candidates}.values() if seen.is_new(c)]


def _score(
    space: Space, acquisition: AcquisitionFunction, candidates: Sequence[Mapping[str, ParamValue]]
) -> np.ndarray:
    """Acquisition value of each candidate on its own (shape ``(len(candidates),)``)."""
    import torch

    with torch.no_grad():
        x = _tensor([space.encode(c) for c in candidates], space.n_dims).unsqueeze(1)
        return acquisition(x).numpy()


def _neighbours(space: Space, candidate: Mapping[str, ParamValue]) -> list[dict[str, ParamValue]]:
    """Candidates one discrete step away: another category, or the next integer up or down."""
    out = []
    for name, param in space.numeric_items():
        value = candidate[name]
        if isinstance(param, Categorical):
            out += [
                {**candidate, name: c}
                for c in param.choices
                if space.key({**candidate, name: c}) != space.key(candidate)
            ]
        elif isinstance(param, Int):
            assert isinstance(value, int)
            out += [
                {**candidate, name: v} for v in (value - param.step, value + param.step) if param.low <= v <= param.high
            ]
    return out


def _climb(
    space: Space,
    acquisition: AcquisitionFunction,
    start: dict[str, ParamValue],
    start_score: float,
    seen: SeenPoints,
    max_steps: int = 8,
) -> dict[str, ParamValue]:
    """Greedy ascent of the acquisition over discrete neighbours, never onto a seen point."""
    current, current_score = start, start_score
    for _ in range(max_steps):
        options = [c for c in _neighbours(space, current) if seen.is_new(c)]
        if not options:
            break
        scores = _score(space, acquisition, options)
        best = int(np.argmax(scores))
        if scores[best] <= current_score:
            break
        current, current_score = options[best], float(scores[best])
    return current


def training_data(view: StudyView) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded observations, as values to *maximize*; failed trials take the worst observed value.

    Returns:
        ``train_x`` of shape ``(m, d)`` and ``train_y`` of shape ``(m, 1)``, float64.
    """
    import torch

    sign = 1.0 if view.direction == "maximize" else -1.0
    complete = view.completed
    worst = min(sign * float(t.value) for t in complete if t.value is not None)
    rows, ys = [], []
    for trial in view.trials:
        if trial.state is TrialState.COMPLETE and trial.value is not None:
            ys.append(sign * trial.value)
        elif trial.state is TrialState.FAILED and view.space.problems(trial.params) == []:
            ys.append(worst)
        else:
            continue
        rows.append(view.space.encode(trial.params))
    return _tensor(rows, view.space.n_dims), torch.tensor(ys, dtype=torch.float64).unsqueeze(-1)


def _acquisition(
    model: SingleTaskGP, train_x: torch.Tensor, train_y: torch.Tensor, pending_x: torch.Tensor, batch: bool
) -> AcquisitionFunction:
    from botorch.acquisition import LogExpectedImprovement, qLogNoisyExpectedImprovement

    if batch or len(pending_x):
        return qLogNoisyExpectedImprovement(
            model, X_baseline=train_x, X_pending=pending_x if len(pending_x) else None, prune_baseline=True
        )
    return LogExpectedImprovement(model, best_f=train_y.max())


def _discrete_grid(space: Space) -> list[dict[str, ParamValue]] | None:
    """Every point of a fully discrete space, or None when it has a Float or too many points."""
    axes: list[list[ParamValue]] = []
    size = 1
    for _, param in space.numeric_items():
        if isinstance(param, Float):
            return None
        values: list[ParamValue]
        if isinstance(param, Int):
            values = list(range(param.low, param.high + 1, param.step))
        else:
            assert isinstance(param, Categorical)
            values = list(param.choices)
        size *= len(values)
        if size > MAX_ENUMERATION:
            return None
        axes.append(values)
    names = [name for name, _ in space.numeric_items()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def _tensor(rows: Sequence[np.ndarray], n_dims: int) -> torch.Tensor:
    import torch

    if not rows:
        return torch.empty(0, n_dims, dtype=torch.float64)
    return torch.tensor(np.stack(rows), dtype=torch.float64)


class BOOptions(Options):
    """Options of ``bo`` (and of the BO partner of ``llm`` and ``auto``): the acquisition optimizer's effort."""

    num_restarts: int = Field(default=8, ge=1, description="starting points of the acquisition optimizer")
    raw_samples: int = Field(default=256, ge=1, description="random points scored to choose those starts")


def bo_from_options(options: BOOptions, context: ProposerContext) -> BOProposer:
    """The BO proposer ``options`` describe (also the partner of the model-backed kinds)."""
    return BOProposer(context.seed, num_restarts=options.num_restarts, raw_samples=options.raw_samples)


PROPOSERS.register("bo", bo_from_options, options=BOOptions)
