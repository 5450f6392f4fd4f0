"""The candidate's side of nas-code: what runs in the sandbox, next to the candidate's model.py.

The trusted evaluators (check_model.py, evaluate.py) call these functions through tools.candidate, in a confined
process that imports this file and with it the candidate's ``build_model``. They get plain data back (a shape, a
parameter count, predicted classes) and judge it themselves: the validation labels never reach this side.
"""

from __future__ import annotations

import torch
from model import build_model
from recipe import count_params, fit

LR = 1e-3  # moderate: the starting MLP reaches about 0.96, which leaves the architecture room to improve it


def check(n_features: int, n_classes: int, batch: int) -> dict[str, object]:
    """Build the network and run one batch through it: its type, parameter count and output."""
    torch.set_num_threads(1)
    model = build_model(n_features, n_classes)
    if not isinstance(model, torch.nn.Module):
        return {"type": type(model).__name__}
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(batch, n_features))
    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    finite = bool(torch.isfinite(out).all()) if isinstance(out, torch.Tensor) else False
    return {"type": "Module", "params": count_params(model), "shape": shape, "finite": finite}


def train_and_predict(x_train: list[list[float]], y_train: list[int], x_val: list[list[float]]) -> dict[str, object]:
    """Train the network on the training rows, then predict a class for each validation row."""
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights for the same code
    model = build_model(len(x_train[0]), 10)
    fit(model, torch.tensor(x_train), torch.tensor(y_train), lr=LR)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.tensor(x_val)).argmax(dim=1).tolist()
    return {"predicted": predicted, "params": count_params(model)}
