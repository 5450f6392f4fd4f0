"""The tests a rewrite of ``count_pairs`` must pass before it is timed (no pytest needed).

Each case is a name, the arguments and the known answer; the edge cases (empty input, duplicates, negatives,
a number paired with itself) are where a faster algorithm most often goes wrong.

This file is trusted: it runs on the host, in this folder, and never imports the candidate. The candidate's
``count_pairs`` runs in its own confined process (tools.candidate), and only its answers come back here.
"""

from __future__ import annotations

import json
import sys

from tools.candidate import Candidate, CandidateError

CASES: list[tuple[str, list[int], int, int]] = [
    ("test_empty", [], 5, 0),
    ("test_single", [5], 10, 0),
    ("test_one_pair", [1, 2, 3], 5, 1),
    ("test_two_pairs", [1, 2, 3, 4], 5, 2),
    ("test_no_pair", [1, 2, 3], 100, 0),
    ("test_duplicates", [2, 2, 2, 2], 4, 6),
    ("test_self_not_paired", [3], 6, 0),
    ("test_half_target_once", [3, 1, 5], 6, 1),
    ("test_repeated_partners", [1, 1, 4, 4, 4], 5, 6),
    ("test_negatives", [-1, -2, 3, 4, -3], 2, 2),
    ("test_zero_target", [0, 0, 5, -5, 0], 0, 4),
    ("test_negative_target", [-4, -6, 0, -10, 2], -10, 2),
    ("test_large_values", [10**12, -(10**12), 10**12 + 7, -(10**12 + 7), -7], 0, 2),
    ("test_order_irrelevant", [4, 1, 3, 2, 5, 0], 5, 3),
]


def main() -> None:
    failed = 0
    try:
        with Candidate.from_env().functions("slow", timeout_s=10) as slow:
            for name, nums, target, expected in CASES:
                try:
                    got: object = slow.call("count_pairs", list(nums), target).value
                except CandidateError as exc:  # a crash on one case is that test failing, not the whole run
                    got = str(exc).splitlines()[0]
                if got != expected:
                    print(
                        f"FAILED {name}: count_pairs({nums}, {target}): expected {expected}, got {got!r}",
                        file=sys.stderr,
                    )
                    failed += 1
    except CandidateError as exc:  # slow.py does not even import
        sys.exit(f"check.py: {exc}")
    if failed:
        sys.exit(1)
    print(json.dumps({"tests_passed": len(CASES)}))


if __name__ == "__main__":
    main()
