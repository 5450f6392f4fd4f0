"""Hyperparameter tuning of scikit-learn models by 3-fold cross-validation on bundled datasets.

The models and search spaces follow Bayesmark's (uber/bayesmark, ``sklearn_funcs.py``), with four
changes: Bayesmark's "logit" warping becomes a linear range (tunesmith has no logit scale); Lasso drops
``normalize``, which scikit-learn removed; and, so that one evaluation stays well under half a second on
two cores, 3 folds instead of 5 and at most ``MLP_MAX_ITER`` MLP epochs instead of 200. Every dataset
ships with scikit-learn, so nothing is downloaded. Folds and model seeds are fixed, so each objective is
deterministic and every optimizer faces the same function.

Classifiers return the cross-validated error rate (1 - accuracy) and regressors the cross-validated mean
squared error: both are minimized.

Left out on purpose: iris and kNN classifiers. kNN's space holds only 100 configurations, and with a
coarse accuracy random search reaches the best one, or one within 1e-5 of it, in a few dozen trials; the
normalized score's denominator then nearly vanishes and one such problem swamps a suite's mean. kNN stays
as a regressor, whose mean squared error separates neighbouring configurations.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from agent.space import Categorical, Float, Int, ParamValue, Space
from evals.problems.base import Problem

CV_FOLDS = 3
MLP_MAX_ITER = 30
RF_N_ESTIMATORS = 10
SEED = 0

_LOADERS: dict[str, Callable[..., Any]] = {
    "breast": load_breast_cancer,
    "diabetes": load_diabetes,
    "digits": load_digits,
    "wine": load_wine,
}


@functools.cache
def load(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and target of a bundled dataset, loaded once per process."""
    return _LOADERS[dataset](return_X_y=True)


KNN_SPACE = Space(n_neighbors=Int(1, 25), p=Int(1, 4))
SVM_SPACE = Space(C=Float(1.0, 1e3, log=True), gamma=Float(1e-4, 1e-3, log=True), tol=Float(1e-5, 1e-1, log=True))
TREE_SPACE = Space(
    max_depth=Int(1, 15),
    min_samples_split=Float(0.01, 0.99),
    min_samples_leaf=Float(0.01, 0.49),
    min_weight_fraction_leaf=Float(0.01, 0.49),
    max_features=Float(0.01, 0.99),
    min_impurity_decrease=Float(0.0, 0.5),
)
MLP_SPACE = Space(
    hidden_layer_sizes=Int(50, 200),
    alpha=Float(1e-5, 1e1, log=True),
    batch_size=Int(10, 250),
    learning_rate_init=Float(1e-5, 1e-1, log=True),
    tol=Float(1e-5, 1e-1, log=True),
    validation_fraction=Float(0.1, 0.9),
    beta_1=Float(0.5, 0.99),
    beta_2=Float(0.9, 1.0 - 1e-6),
    epsilon=Float(1e-9, 1e-6, log=True),
)
ADA_SPACE = Space(n_estimators=Int(10, 100), learning_rate=Float(1e-4, 1e1, log=True))
LASSO_SPACE = Space(
    alpha=Float(1e-2, 1e2, log=True),
    fit_intercept=Categorical([True, False]),
    max_iter=Int(10, 5000, log=True),
    tol=Float(1e-5, 1e-1, log=True),
    positive=Categorical([True, False]),
)


def _scaled(estimator: BaseEstimator) -> BaseEstimator:
    """Standardize features inside each fold: distance- and gradient-based models need it."""
    return make_pipeline(StandardScaler(), estimator)


def _knn_regressor(p: Mapping[str, Any]) -> BaseEstimator:
    return _scaled(KNeighborsRegressor(**p))


def _svm(p: Mapping[str, Any]) -> BaseEstimator:
    return _scaled(SVC(kernel="rbf", **p))


def _dt_classifier(p: Mapping[str, Any]) -> BaseEstimator:
    return DecisionTreeClassifier(random_state=SEED, **p)


def _dt_regressor(p: Mapping[str, Any]) -> BaseEstimator:
    return DecisionTreeRegressor(random_state=SEED, **p)


def _rf_classifier(p: Mapping[str, Any]) -> BaseEstimator:
    return RandomForestClassifier(n_estimators=RF_N_ESTIMATORS, random_state=SEED, n_jobs=1, **p)


def _rf_regressor(p: Mapping[str, Any]) -> BaseEstimator:
    return RandomForestRegressor(n_estimators=RF_N_ESTIMATORS, random_state=SEED, n_jobs=1, **p)


def _mlp(p: Mapping[str, Any]) -> BaseEstimator:
    return _scaled(MLPClassifier(solver="adam", early_stopping=True, max_iter=MLP_MAX_ITER, random_state=SEED, **p))


def _ada(p: Mapping[str, Any]) -> BaseEstimator:
    return AdaBoostClassifier(random_state=SEED, **p)


def _lasso(p: Mapping[str, Any]) -> BaseEstimator:
    return _scaled(Lasso(random_state=SEED, **p))


def cv_loss(build: Callable[[Mapping[str, Any]], BaseEstimator], dataset: str, params: Mapping[str, Any]) -> float:
    """Cross-validated loss of ``build(params)`` on ``dataset``: error rate or mean squared error.

    A model that cannot be fitted raises (``error_score="raise"``) rather than scoring NaN, so that the
    run records a failed trial with the reason.
    """
    X, y = load(dataset)
    estimator = build(dict(params))
    classifier = is_classifier(estimator)
    cv = (StratifiedKFold if classifier else KFold)(CV_FOLDS, shuffle=True, random_state=SEED)
    scoring = "accuracy" if classifier else "neg_mean_squared_error"
    with warnings.catch_warnings():
        # Optimizers are meant to try odd settings; the warnings they cause are expected noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*batch_size.*", category=UserWarning)
        scores = cross_val_score(estimator, X, y, cv=cv, scoring=scoring, n_jobs=1, error_score="raise")
    mean = float(np.mean(scores))
    return 1.0 - mean if classifier else -mean


def _problem(name: str, space: Space, build: Callable[[Mapping[str, Any]], BaseEstimator], dataset: str) -> Problem:
    def objective(params: Mapping[str, ParamValue]) -> float:
        return cv_loss(build, dataset, params)

    return Problem(name, "ml", space, objective, None)


PROBLEMS: list[Problem] = [
    _problem("svm-breast", SVM_SPACE, _svm, "breast"),
    _problem("svm-digits", SVM_SPACE, _svm, "digits"),
    _problem("knn-diabetes", KNN_SPACE, _knn_regressor, "diabetes"),
    _problem("dt-breast", TREE_SPACE, _dt_classifier, "breast"),
    _problem("dt-diabetes", TREE_SPACE, _dt_regressor, "diabetes"),
    _problem("rf-wine", TREE_SPACE, _rf_classifier, "wine"),
    _problem("rf-diabetes", TREE_SPACE, _rf_regressor, "diabetes"),
    _problem("mlp-breast", MLP_SPACE, _mlp, "breast"),
    _problem("mlp-wine", MLP_SPACE, _mlp, "wine"),
    _problem("ada-wine", ADA_SPACE, _ada, "wine"),
    _problem("lasso-diabetes", LASSO_SPACE, _lasso, "diabetes"),
]
