"""Fault injection: does tunesmith keep its promises when processes die, race, and models misbehave?

    python -m evals.reliability                                   # every scenario, default sizes (< 15 min, 2 cores)
    python -m evals.reliability --scenario kill9 --kills 8
    python -m evals.reliability --scenario race,secrets --out r.md --json r.json
    python -m evals.reliability --summarize r.json                # re-render the markdown of a saved run

The README promises that ``kill -9`` loses nothing completed, that any number of processes may share a study,
that a run ends within its wall time whatever the model server does, and that secrets reach no storage, log,
terminal or model. Each scenario breaks one of those on purpose, with real processes, a real SQLite file,
a real HTTP server and the real ``tunesmith`` command, and counts what survived. The report reads like a
database's fault-injection report: one row per check, the cases tried, how many held, how many broke, the
worst figure seen, and notes that say what broke. The harness never asserts: a broken case is a row, so a run
on a faulty tree finishes and says where it is faulty.

Scenarios (one module each):

* :mod:`.kill9` - ``tunesmith run`` killed with SIGKILL at random moments and resumed.
* :mod:`.race` - processes that open a new database at the same moment (forked by :mod:`.race_driver`); CLI
  runs that share enqueued points.
* :mod:`.models` - one study per misbehaving model-server behaviour, bounded by its wall time.
* :mod:`.leaks` - planted secrets counted wherever tunesmith writes.

:mod:`.counting` holds the definitions (finished, duplicate, lost) as pure functions; :mod:`.report` renders
the table from the JSON alone; :mod:`.common` starts and kills processes and reads databases.

Every process the harness starts carries the environment variable ``TUNESMITH_RELIABILITY_MARK``, inherited by
everything it starts in turn; it is how stray processes are found, and how the harness kills all it started,
whatever happens, when a scenario ends. Each scenario works in its own folder, with ``TMPDIR`` pointing inside
it, so that only its own temporary folders are counted.
"""
