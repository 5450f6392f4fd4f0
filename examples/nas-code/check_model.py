"""The cheap first stage: does ``build_model`` build a network of the right shape and size?

It runs before the training in evaluate.py, so a candidate that does not even build (a syntax error, a wrong
shape, a network too large) fails in a second, with a message the model can act on, instead of costing a
training run.
"""

from __future__ import annotations

import json
import sys

import torch

MAX_PARAMS = 500_000
N_FEATURES, N_CLASSES, BATCH = 64, 10, 8


def main() -> None:
    torch.set_num_threads(1)
    from model import build_model  # imported here: a broken model.py is reported, not a bare traceback

    model = build_model(N_FEATURES, N_CLASSES)
    if not isinstance(model, torch.nn.Module):
        sys.exit(f"check_model.py: build_model returned {type(model).__name__}, not a torch.nn.Module")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if params > MAX_PARAMS:
        sys.exit(f"check_model.py: {params:,} parameters, over the limit of {MAX_PARAMS:,}: make the network smaller")
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(BATCH, N_FEATURES))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, N_CLASSES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        sys.exit(f"check_model.py: a batch of {BATCH} gave output {shape}, expected ({BATCH}, {N_CLASSES}) logits")
    if not torch.isfinite(out).all():
        sys.exit("check_model.py: the output holds NaN or infinite values")
    print(json.dumps({"params": params}))


if __name__ == "__main__":
    main()
