"""Importable objectives for tests that evaluate in other processes (they cannot take lambdas)."""

from __future__ import annotations


def quadratic(params: dict) -> float:
    return (float(params["x"]) - 0.3) ** 2
