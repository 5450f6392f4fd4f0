"""Train one MLP architecture on scikit-learn's digits; print its validation accuracy and size as JSON.

tunesmith runs this once per trial with the candidate as command-line arguments and reads the last JSON
object it prints. Every hidden layer has the same width (``--width``): the space stays five numbers, and
depth and width are separate knobs the search can trade against each other.

    python train.py --layers 2 --width 64 --activation relu --dropout 0.1 --lr 0.003
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from recipe import count_params, fit, load_split
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build_mlp(n_features: int, n_classes: int, layers: int, width: int, activation: str, dropout: float) -> nn.Module:
    """``layers`` hidden layers of ``width`` units, each Linear -> activation -> Dropout, then the logits."""
    blocks: list[nn.Module] = []
    size = n_features
    for _ in range(layers):
        blocks += [nn.Linear(size, width), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        size = width
    return nn.Sequential(*blocks, nn.Linear(size, n_classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), required=True)
    parser.add_argument("--dropout", type=float, required=True)
    parser.add_argument("--lr", type=float, required=True)
    args = parser.parse_args()
    if args.layers < 1 or args.width < 1 or not 0.0 <= args.dropout < 1.0 or args.lr <= 0.0:
        sys.exit(f"train.py: need layers >= 1, width >= 1, 0 <= dropout < 1, lr > 0; got {vars(args)}")

    torch.set_num_threads(1)  # a trial is small: one core is enough, and leaves the others free
    torch.manual_seed(0)  # the same initial weights and dropout masks for the same architecture
    data = load_split()
    model = build_mlp(data[0].shape[1], 10, args.layers, args.width, args.activation, args.dropout)
    accuracy, seconds = fit(model, data, lr=args.lr)
    print(json.dumps({"accuracy": round(accuracy, 6), "params": count_params(model), "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
