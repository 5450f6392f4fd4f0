"""Synthetic test functions with known global minima, written in numpy so an evaluation costs microseconds.

The formulas follow the Virtual Library of Simulation Experiments (Surjanovic & Bingham) and agree with
``botorch.test_functions`` (checked in ``evals/tests``). Domains are the usual ones except Ackley, whose
usual box [-32.768, 32.768]^d is a near-flat plateau on which fifty trials in five dimensions learn
nothing that separates optimizers; here it is [-5, 10]^5, which still holds many local minima and, being
asymmetric, puts the optimum off the box centre so that a method biased towards the centre gains nothing.

The mixed problem exercises integer, log-integer and categorical handling, which the continuous
functions do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from agent.space import Categorical, Float, Int, ParamValue, Space
from evals.problems.base import Problem


def branin(x: np.ndarray) -> float:
    """Branin on x0 in [-5, 10], x1 in [0, 15]; three global minima of 0.397887."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return float((x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10)


_HARTMANN6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_HARTMANN6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_HARTMANN6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: np.ndarray) -> float:
    """Hartmann 6-d on [0, 1]^6; global minimum -3.32237."""
    inner = np.sum(_HARTMANN6_A * (x - _HARTMANN6_P) ** 2, axis=1)
    return float(-np.sum(_HARTMANN6_ALPHA * np.exp(-inner)))


def ackley(x: np.ndarray) -> float:
    """Ackley (a=20, b=0.2, c=2*pi); global minimum 0 at the origin."""
    mean_sq = np.mean(x**2)
    mean_cos = np.mean(np.cos(2 * math.pi * x))
    return float(-20 * math.exp(-0.2 * math.sqrt(mean_sq)) - math.exp(mean_cos) + 20 + math.e)


def rosenbrock(x: np.ndarray) -> float:
    """Rosenbrock; global minimum 0 at (1, ..., 1)."""
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (x[:-1] - 1) ** 2))


def levy(x: np.ndarray) -> float:
    """Levy; global minimum 0 at (1, ..., 1)."""
    w = 1 + (x - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    body = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + body + tail)


def styblinski_tang(x: np.ndarray) -> float:
    """Styblinski-Tang; global minimum -39.16617 * d at x_i = -2.903534."""
    return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x))


def _vector_problem(
    name: str, function: Callable[[np.ndarray], float], bounds: list[tuple[float, float]], optimum: float
) -> Problem:
    """A problem over floats x0, x1, ... that calls ``function`` on them as one vector."""
    space = Space({f"x{i}": Float(low, high) for i, (low, high) in enumerate(bounds)})
    names = list(space)

    def objective(params: Mapping[str, ParamValue]) -> float:
        return function(np.array([float(params[n]) for n in names]))

    return Problem(name, "synthetic", space, objective, optimum)


# A shifted sphere over three floats, a linear integer, a log-scaled integer and a categorical whose
# choices add offsets. Every term is zero at its target, so the optimum is 0, reached only at one point.
_MIXED_FLOAT_TARGET = np.array([1.3, -2.1, 0.7])
_MIXED_COLOR_OFFSET = {"red": 1.0, "green": 0.0, "blue": 2.0, "white": 0.5}
MIXED_SPACE = Space(
    x0=Float(-5, 5),
    x1=Float(-5, 5),
    x2=Float(-5, 5),
    count=Int(0, 20),
    size=Int(1, 1000, log=True),
    color=Categorical(list(_MIXED_COLOR_OFFSET)),
)


def mixed(params: Mapping[str, ParamValue]) -> float:
    """The mixed problem's objective; 0 at x = (1.3, -2.1, 0.7), count = 13, size = 40, color = green."""
    x = np.array([float(params[f"x{i}"]) for i in range(3)])
    count = int(params["count"])
    size = int(params["size"])
    return float(
        np.sum((x - _MIXED_FLOAT_TARGET) ** 2)
        + ((count - 13) / 4) ** 2
        + math.log(size / 40) ** 2
        + _MIXED_COLOR_OFFSET[str(params["color"])]
    )


PROBLEMS: list[Problem] = [
    _vector_problem("branin", branin, [(-5, 10), (0, 15)], 0.397887357729738),
    _vector_problem("hartmann6", hartmann6, [(0, 1)] * 6, -3.32236801141551),
    _vector_problem("ackley5", ackley, [(-5, 10)] * 5, 0.0),
    _vector_problem("rosenbrock4", rosenbrock, [(-5, 10)] * 4, 0.0),
    _vector_problem("levy6", levy, [(-10, 10)] * 6, 0.0),
    _vector_problem("styblinski_tang4", styblinski_tang, [(-5, 5)] * 4, -39.16616570377142 * 4),
    Problem("mixed", "synthetic", MIXED_SPACE, mixed, 0.0),
]
