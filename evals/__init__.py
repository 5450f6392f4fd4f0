"""Benchmark harness: tunesmith's proposers against Optuna's samplers and plain random search.

Run ``python -m evals.run --help`` from the repository root. The harness is not installed with the
library; it imports ``agent`` from the working tree so that a benchmark always measures the code beside it.

Modules, one job each:
    problems/   what is optimized: synthetic functions with known optima and scikit-learn tuning tasks
    optimizers  one ask/tell adapter per compared method, all seeded
    runner      one (problem, optimizer, seed) run in a worker process
    scoring     Bayesmark-style normalized scores, ranks and suggestion times
    report      the markdown report and the machine it ran on
    run         the command line and the process pool
    tests/      checks of the harness itself: ``python -m pytest evals/tests`` (not in the default testpaths)
"""
