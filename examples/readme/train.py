"""A stand-in for a training script, for the job file in README.md (tests/test_readme.py runs it).

It takes the README's parameters on the command line and prints the result as a JSON object on its last
line, as tunesmith expects. The "accuracy" is a smooth made-up function (best near lr = 1e-3, depth = 4,
adam), so that a study of a few trials runs in seconds; put real training here.

    python train.py --lr 0.001 --depth 3 --optimizer adam    # prints {"accuracy": ...}

``objective`` is the same score for ``function = "train:objective"`` in a job file.
"""

from __future__ import annotations

import argparse
import json
import math


def objective(params: dict) -> dict[str, float]:
    lr, depth, optimizer = float(params["lr"]), int(params["depth"]), str(params["optimizer"])
    accuracy = 0.95 - 0.04 * (math.log10(lr) + 3) ** 2 - 0.01 * (depth - 4) ** 2
    accuracy += {"adam": 0.0, "adamw": -0.005, "sgd": -0.02}[optimizer]
    return {"accuracy": round(max(accuracy, 0.0), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--optimizer", choices=["adam", "sgd", "adamw"], required=True)
    args = parser.parse_args()
    print(json.dumps({"step": 1, "value": 0.5}))  # a progress report: not the result
    print(json.dumps(objective(vars(args))))


if __name__ == "__main__":
    main()
