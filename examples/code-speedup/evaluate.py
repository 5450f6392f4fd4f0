"""Time the candidate's ``count_pairs`` on benchmark inputs; print the best of 3 runs as JSON.

This file is trusted: it runs on the host, in this folder, and never imports the candidate. The candidate runs
in its own confined process (tools.candidate); this side makes the inputs, times each call from the moment the
arguments are sent to the moment the answer arrives, and checks every answer against a reference. So a
candidate cannot print a better time (its output is not read), remember or precompute answers (the inputs are
drawn afresh from the OS's randomness for every trial), or be fast by being wrong.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter

from tools.candidate import Candidate, CandidateError

N = 7000  # numbers per input
RUNS = 3
TIMEOUT_S = 30.0  # per call: the original takes about 1-2 s


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
    rng = random.SystemRandom()  # not seeded: nothing for the candidate to predict
    best = float("inf")
    try:
        with Candidate.from_env().functions("slow", timeout_s=TIMEOUT_S) as slow:
            for run in range(RUNS):
                nums = [rng.randint(-1000, 1000) for _ in range(N)]
                target = rng.randint(-100, 100)
                call = slow.call("count_pairs", nums, target)
                best = min(best, call.seconds)
                expected = reference(nums, target)
                if call.value != expected:
                    sys.exit(
                        f"evaluate.py: wrong answer on benchmark input {run} ({N} numbers): {call.value!r}, "
                        f"expected {expected}"
                    )
    except CandidateError as exc:
        sys.exit(f"evaluate.py: {exc}")
    print(json.dumps({"seconds": round(best, 6)}))


if __name__ == "__main__":
    main()
