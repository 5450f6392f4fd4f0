"""The training recipe of the nas-code example (nas-space has its own copy, which also scores the model here).

Fixed and seeded, so that the only thing that changes between trials is the architecture (and, in nas-space,
the learning rate): scikit-learn's bundled digits (nothing downloaded), a stratified 75/25 split, features
standardized on the training rows, Adam with mini-batches of 32 on one CPU thread.
"""

from __future__ import annotations

import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

EPOCHS = 15
BATCH = 32
SEED = 0

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_split() -> Split:
    """Train and validation tensors: 1347 and 450 rows of 64 standardized features, labels 0-9."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, stratify=y, random_state=SEED)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6  # some pixels are always blank
    x_train, x_val = (torch.tensor((a - mean) / std, dtype=torch.float32) for a in (x_train, x_val))
    return x_train, torch.tensor(y_train), x_val, torch.tensor(y_val)


def fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, lr: float, epochs: int = EPOCHS) -> float:
    """Train ``model`` with Adam; returns the training seconds. Scoring is the evaluator's, on rows this never
    sees with their labels."""
    generator = torch.Generator().manual_seed(SEED)  # the same batches for every architecture
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x_train), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    return time.perf_counter() - start


def count_params(model: nn.Module) -> int:
    """Trainable parameters: the size the searches trade against accuracy."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
