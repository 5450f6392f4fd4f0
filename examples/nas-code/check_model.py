"""The cheap first stage: does ``build_model`` build a network of the right shape and size?

It runs before the training in evaluate.py, so a candidate that does not even build (a syntax error, a wrong
shape, a network too large) fails in a second, with a message the model can act on, instead of costing a
training run. This file is trusted: it runs on the host and never imports the candidate, which runs in its own
confined process (in_sandbox.py, through tools.candidate).
"""

from __future__ import annotations

import json
import sys

from tools.candidate import Candidate, CandidateError

MAX_PARAMS = 500_000
N_FEATURES, N_CLASSES, BATCH = 64, 10, 8


def main() -> None:
    try:
        with Candidate.from_env().functions("in_sandbox", timeout_s=30) as side:
            built = side.call("check", N_FEATURES, N_CLASSES, BATCH).value
    except CandidateError as exc:  # a broken model.py is reported, not a bare traceback
        sys.exit(f"check_model.py: {exc}")
    if built.get("type") != "Module":
        sys.exit(f"check_model.py: build_model returned {built.get('type')}, not a torch.nn.Module")
    params = built["params"]
    if not isinstance(params, int) or params > MAX_PARAMS:
        sys.exit(f"check_model.py: {params:,} parameters, over the limit of {MAX_PARAMS:,}: make the network smaller")
    if built["shape"] != [BATCH, N_CLASSES]:
        sys.exit(
            f"check_model.py: a batch of {BATCH} gave output {built['shape']}, expected ({BATCH}, {N_CLASSES}) logits"
        )
    if not built["finite"]:
        sys.exit("check_model.py: the output holds NaN or infinite values")
    print(json.dumps({"params": params}))


if __name__ == "__main__":
    main()
