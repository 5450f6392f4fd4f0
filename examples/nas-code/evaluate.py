"""Train the network that ``build_model`` in model.py builds, on scikit-learn's digits; print its accuracy.

The recipe (split, epochs, batch, Adam at a fixed learning rate) is the same for every candidate, so the
accuracy measures the architecture alone. check_model.py has already checked its shape and size.
"""

from __future__ import annotations

import json

import torch
from model import build_model
from recipe import count_params, fit, load_split

LR = 1e-3  # moderate: the starting MLP reaches about 0.96, which leaves the architecture room to improve it


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights for the same code
    data = load_split()
    model = build_model(data[0].shape[1], 10)
    accuracy, _ = fit(model, data, lr=LR)
    print(json.dumps({"accuracy": round(accuracy, 6), "params": count_params(model)}))


if __name__ == "__main__":
    main()
