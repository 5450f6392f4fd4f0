"""Train a random forest on scikit-learn's bundled breast-cancer data; print the CV accuracy as JSON.

tunesmith runs this once per trial with the candidate as command-line arguments and reads the last JSON
object it prints. Nothing is downloaded: the dataset ships with scikit-learn.
"""

import argparse
import json

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score

parser = argparse.ArgumentParser()
parser.add_argument("--n-estimators", type=int, required=True)
parser.add_argument("--max-depth", type=int, required=True)
parser.add_argument("--max-features", type=float, required=True)
parser.add_argument("--criterion", choices=["gini", "entropy", "log_loss"], required=True)
args = parser.parse_args()

X, y = load_breast_cancer(return_X_y=True)
model = RandomForestClassifier(
    n_estimators=args.n_estimators,
    max_depth=args.max_depth,
    max_features=args.max_features,
    criterion=args.criterion,
    random_state=0,
    n_jobs=1,
)
scores = cross_val_score(model, X, y, cv=3)
print(json.dumps({"accuracy": float(scores.mean()), "accuracy_std": float(scores.std())}))
