import torch  # noqa: F401  (not used by the starting code; rewrites of build_model may use it)
from torch import nn


# tunesmith: begin build_model
def build_model(n_features: int, n_classes: int) -> nn.Module:
    """A small MLP; tunesmith's model rewrites this function."""
    return nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, n_classes))


# tunesmith: end build_model
