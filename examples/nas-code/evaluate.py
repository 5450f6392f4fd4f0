"""Train the network that the candidate's ``build_model`` builds, on scikit-learn's digits; print its accuracy.

The recipe (split, epochs, batch, Adam at a fixed learning rate) is the same for every candidate, so the
accuracy measures the architecture alone. check_model.py has already checked its shape and size.

This file is trusted: it runs on the host and never imports the candidate. The candidate trains in its own
confined process (in_sandbox.py, through tools.candidate) on the training rows and returns a class for each
validation row; the validation labels stay here, and the accuracy is computed here. (The digits are a public
dataset that ships with scikit-learn: a held-out set the candidate can read elsewhere is not held out. Keep
real validation data out of the candidate's copy and of the folders it can read.)
"""

from __future__ import annotations

import json
import sys

from recipe import load_split

from tools.candidate import Candidate, CandidateError

TIMEOUT_S = 100.0  # the training: 5-10 s on one core


def main() -> None:
    x_train, y_train, x_val, y_val = load_split()
    try:
        with Candidate.from_env().functions("in_sandbox", timeout_s=TIMEOUT_S) as side:
            trained = side.call("train_and_predict", x_train.tolist(), y_train.tolist(), x_val.tolist()).value
    except CandidateError as exc:
        sys.exit(f"evaluate.py: {exc}")
    predicted, labels = trained.get("predicted"), y_val.tolist()
    if not isinstance(predicted, list) or len(predicted) != len(labels):
        sys.exit(f"evaluate.py: expected {len(labels)} predicted classes, got {str(predicted)[:80]}")
    accuracy = sum(int(p == y) for p, y in zip(predicted, labels, strict=True)) / len(labels)
    print(json.dumps({"accuracy": round(accuracy, 6), "params": trained.get("params")}))


if __name__ == "__main__":
    main()
