"""Code evolution and architecture search, measured on the three examples with the real CLI and the local model.

    python -m evals.evolution                                   # defaults: speedup 8 trials, nas 6 (15-20 min)
    python -m evals.evolution --trials-speedup 12 --trials-nas 10 --out e.md --json e.json
    python -m evals.evolution --only code-speedup --trials-speedup 4
    python -m evals.evolution --summarize e.json                # re-render the markdown of a saved run

Each example folder (``examples/code-speedup``, ``examples/nas-code``, ``examples/nas-space``) is copied into a
temporary folder and run there as a user runs it: ``python -m agent.cli run job.toml --trials N --storage
bench.db``, with the job's own model (``local``: SmolLM2-135M on llama.cpp, in the CLI's process). ``nas-space``
runs twice, as it is (``auto`` with the model) and with ``[proposer] kind = "bo"`` and no model, on the same space
and trials. Then the SQLite file is read and the report says:

1. *seconds per code candidate*: the latency of the ``evolve`` model calls (per call, and per proposal: the
   proposals are prefetched, so model time overlaps evaluation, and the run's wall time per trial is shown
   beside it), the trial's evaluation time and its stage times (``<stage>_seconds``), and the sandbox's own
   cost, measured apart (:func:`evals.evolution.runs.sandbox_overhead`);
2. *the share of edits that apply*: ``evolve`` calls whose ``error`` is empty, and the rejections by reason;
3. *the speed-up found* on code-speedup: trial 0 (the starting program) over the best, and the trials that
   failed their tests stage;
4. *architecture search*: the best accuracy of nas-space with ``auto`` and with ``bo``, and of nas-code
   (``evolve``) with its parameter count.

:mod:`.stats` holds the definitions as pure functions of the stored rows; :mod:`.runs` copies, runs and times;
:mod:`.report` renders the markdown from the JSON alone. One seed per run: a single run's best is a sample,
not an estimate of the mean.
"""
