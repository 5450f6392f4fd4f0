"""Bayesmark-style scoring of the raw runs: normalized scores, ranks and suggestion times.

Normalized score of one run at trial t (after t evaluations):

    (best_so_far(t) - optimum) / (mean over seeds of randomsearch best_so_far(t) - optimum)

so 0 is the optimum, 1.0 is plain random search and lower is better; the transformation is affine per
problem, so scores are comparable across problems whatever their units. ``optimum`` is the known global
minimum (or any lower value a run found, in case a constant was rounded) and, where none is known (the
ML tasks), the best value any optimizer found on any seed of the same run. A (problem, t) at which every
random-search seed already reached the optimum has no scale; it is reported as saturated and left out
of the averages at that t rather than given an arbitrary value.

Before a run's first successful evaluation its best-so-far is the worst value observed on that problem
in the whole run, so failures never look like progress.

Standard errors are over seeds: for a suite, each seed's scores are first averaged over the suite's
problems, then the mean and standard error are taken over seeds (problems fixed, seeds random).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from evals.model_stats import aggregate
from evals.optimizers import BASELINE

#: Suggestion time is reported over this many final trials, where methods that model the history are slowest.
LAST_TRIALS = 10

Runs = Sequence[Mapping[str, Any]]


def default_checkpoints(trials: int) -> list[int]:
    """Trial counts to report: 10, 20, 30, 50, 100, 200 below ``trials``, and ``trials`` itself."""
    return sorted({c for c in (10, 20, 30, 50, 100, 200) if c < trials} | {trials})


def mean_se(x: np.ndarray) -> dict[str, float | None]:
    """Mean and standard error of a 1-d array, ignoring NaN; None where undefined."""
    x = x[~np.isnan(x)]
    if x.size == 0:
        return {"mean": None, "se": None}
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else None
    return {"mean": float(np.mean(x)), "se": se}


def _median_last(runs: Runs, key: str) -> float | None:
    """Median of ``run[key][-LAST_TRIALS:]`` pooled over ``runs``."""
    pooled = [s for run in runs for s in run[key][-LAST_TRIALS:]]
    return float(np.median(pooled)) if pooled else None


def _traces(runs: Runs, fill: float) -> np.ndarray:
    """Best-so-far traces, shape ``(seeds, trials)``, by seed; None (no success yet) becomes ``fill``."""
    ordered = sorted(runs, key=lambda r: r["seed"])
    return np.array([[fill if b is None else b for b in r["best_so_far"]] for r in ordered], dtype=float)


class _ProblemScores:
    """Normalized scores of every optimizer on one problem, shape ``(seeds, trials)`` each."""

    def __init__(self, info: Mapping[str, Any], groups: Mapping[str, Runs]) -> None:
        observed = [v for runs in groups.values() for run in runs for v in run["values"] if v is not None]
        worst = max(observed, default=np.nan)
        best_seen = min(observed, default=np.nan)
        self.info = info
        self.groups = groups
        self.optimum = best_seen if info["optimum"] is None else min(info["optimum"], best_seen)
        self.traces = {o: _traces(runs, worst) for o, runs in groups.items()}
        if BASELINE not in self.traces:
            raise ValueError(f"scoring needs the {BASELINE} runs of {info['name']!r} as its baseline")
        self.scale = self.traces[BASELINE].mean(axis=0) - self.optimum  # shape (trials,)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.normalized = {
                o: np.where(self.scale > 0, (tr - self.optimum) / self.scale, np.nan) for o, tr in self.traces.items()
            }
        # Ranking the mean final best value is ranking the mean normalized score (an increasing affine map),
        # and stays defined where the problem is saturated.
        final_mean = [self.traces[o][:, -1].mean() for o in groups]
        self.ranks = dict(zip(groups, rankdata(final_mean).tolist(), strict=True))

    def summary(self, checkpoints: list[int]) -> dict[str, Any]:
        """The JSON-ready per-problem summary."""
        return {
            "suite": self.info["suite"],
            "dims": self.info["dims"],
            "optimum": self.optimum,
            "optimum_known": self.info["optimum"] is not None,
            "saturated": [t for t in checkpoints if not self.scale[t - 1] > 0],
            "optimizers": {
                o: {
                    "scores": {str(t): mean_se(self.normalized[o][:, t - 1]) for t in checkpoints},
                    "final_best": mean_se(self.traces[o][:, -1]),
                    "rank": self.ranks[o],
                    "runs": len(runs),
                    "failures": sum(run["failures"] for run in runs),
                    "median_ask_s": _median_last(runs, "ask_seconds"),
                    "median_eval_s": float(np.median([s for run in runs for s in run["eval_seconds"]])),
                }
                for o, runs in self.groups.items()
            },
        }


def summarize(runs: Runs, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Score the runs that ``meta`` describes (its problems, optimizers and checkpoints).

    Returns:
        a JSON-ready dict: ``problems`` (per problem: optimum used, saturated checkpoints and, per
        optimizer, scores at each checkpoint, final best value, rank, failures, median times), ``suites``
        (per suite and optimizer: score at each checkpoint, mean rank, median suggestion time),
        ``timing`` (median suggestion time per optimizer over all problems) and ``bo_over_gp``; and, only
        when some runs called a model, ``model`` (per such optimizer, see :func:`evals.model_stats.aggregate`).
    """
    optimizers: list[str] = list(meta["optimizers"])
    checkpoints: list[int] = list(meta["checkpoints"])
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        by_key[run["problem"], run["optimizer"]].append(run)
    scored = {
        info["name"]: _ProblemScores(info, {o: by_key[info["name"], o] for o in optimizers})
        for info in meta["problems"]
    }

    suites: dict[str, Any] = {}
    for suite in dict.fromkeys(info["suite"] for info in meta["problems"]):
        members = [s for s in scored.values() if s.info["suite"] == suite]
        suites[suite] = {
            "problems": len(members),
            "optimizers": {o: _suite_scores(members, o, checkpoints) for o in optimizers},
        }

    timing = {o: _median_last([r for r in runs if r["optimizer"] == o], "ask_seconds") for o in optimizers}
    bo, gp = timing.get("bo"), timing.get("gp")
    summary = {
        "checkpoints": checkpoints,
        "last_trials": LAST_TRIALS,
        "suites": suites,
        "timing": timing,
        "bo_over_gp": bo / gp if bo is not None and gp else None,
        "problems": {name: s.summary(checkpoints) for name, s in scored.items()},
    }
    model = aggregate([r for r in runs if r["optimizer"] in optimizers], optimizers)
    if model:
        summary["model"] = model
    return summary


def _suite_scores(members: list[_ProblemScores], optimizer: str, checkpoints: list[int]) -> dict[str, Any]:
    """One optimizer's scores on a suite: per seed averaged over (unsaturated) problems, then over seeds."""
    scores = {}
    for t in checkpoints:
        per_problem = np.stack([m.normalized[optimizer][:, t - 1] for m in members])  # (problems, seeds)
        usable = per_problem[~np.all(np.isnan(per_problem), axis=1)]
        per_seed = usable.mean(axis=0) if usable.size else np.array([np.nan])
        scores[str(t)] = mean_se(per_seed)
    runs = [run for m in members for run in m.groups[optimizer]]
    return {
        "scores": scores,
        "mean_rank": float(np.mean([m.ranks[optimizer] for m in members])),
        "median_ask_s": _median_last(runs, "ask_seconds"),
    }
