"""Time ``count_pairs`` from slow.py on a benchmark input; print the best of 3 runs as JSON.

Each run gets a different input of the same size (so a function that remembers its last answer gains
nothing), and each answer is checked against a reference, so a fast but wrong rewrite fails instead of
winning. The size makes the original double loop take about 1-2 s on one core.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter

N = 7000  # numbers per input
RUNS = 3


def reference(nums: list[int], target: int) -> int:
    """The answer by counting: pairs of distinct values, plus pairs within a value that is half the target."""
    counts = Counter(nums)
    total = 0
    for value, k in counts.items():
        partner = target - value
        if value < partner:
            total += k * counts.get(partner, 0)
        elif value == partner:
            total += k * (k - 1) // 2
    return total


def main() -> None:
    from slow import count_pairs

    best = float("inf")
    for run in range(RUNS):
        rng = random.Random(run)
        nums = [rng.randint(-1000, 1000) for _ in range(N)]
        target = rng.randint(-100, 100)
        expected = reference(nums, target)
        start = time.perf_counter()
        got = count_pairs(nums, target)
        best = min(best, time.perf_counter() - start)
        if got != expected:
            sys.exit(f"evaluate.py: wrong answer on benchmark input {run} ({N} numbers): {got}, expected {expected}")
    print(json.dumps({"seconds": round(best, 6)}))


if __name__ == "__main__":
    main()
