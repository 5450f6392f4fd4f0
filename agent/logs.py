"""What tunesmith says while it works, through :mod:`logging`, and where that goes when nobody set it up.

Like Optuna, the library logs each finished trial at INFO (``trial 3 complete  0.934 (bo, 2.1 s) ...``)
on the ``agent.trials`` logger (:data:`TRIAL_LOGGER`), and long waits (a model starting, a GP fit) say
what they wait for. A script that never configures logging must still see these lines: an objective with
a typo otherwise fails every trial in silence. So :func:`install` (run on ``import agent``) sets the
``agent`` logger to INFO and gives it a fallback handler that writes to stderr *only while the
application has configured no handler* on the way to the root logger. Once it has
(``logging.basicConfig``, pytest's ``caplog``, the CLI's own handler), the records go there alone and
nothing is printed twice.

To change how much is said::

    import logging
    from agent.logs import set_verbosity

    set_verbosity(logging.WARNING)  # no trial lines, only warnings and errors
    set_verbosity(logging.DEBUG)    # also each model call: tokens, seconds, valid candidates
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from agent.secrets import RedactingFilter

#: The logger every tunesmith module logs under (``agent.study``, ``agent.llm.local``, ...).
ROOT = "agent"
#: The logger of the one line per finished trial, apart so that an application that shows trials its own
#: way (the CLI's progress view) can leave these lines out by name.
TRIAL_LOGGER = "agent.trials"
#: The level :func:`install` sets: finished trials and long waits are shown.
DEFAULT_LEVEL = logging.INFO


class FallbackHandler(logging.Handler):
    """Writes to stderr when no other handler would get the record; silent once logging is configured."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("[%(levelname).1s %(asctime)s tunesmith] %(message)s", "%H:%M:%S"))
        self.addFilter(RedactingFilter())  # a message quoting a server's reply must not print the key it echoed

    def emit(self, record: logging.LogRecord) -> None:
        if _configured(logging.getLogger(record.name), self):
            return
        try:  # sys.stderr looked up at each record, as logging's last resort does: it is often swapped
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _configured(logger: logging.Logger, fallback: logging.Handler) -> bool:
    """Whether a record of ``logger`` reaches a handler other than ``fallback`` (the application's)."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(handler is not fallback for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


_installed: FallbackHandler | None = None
_install_lock = threading.Lock()


def install() -> None:
    """Set the ``agent`` logger to INFO with its fallback handler; once per process (``import agent`` does it).

    A level the application set on the ``agent`` logger before is kept.
    """
    global _installed
    with _install_lock:
        if _installed is not None:
            return
        logger = logging.getLogger(ROOT)
        _installed = FallbackHandler()
        logger.addHandler(_installed)
        if logger.level == logging.NOTSET:
            logger.setLevel(DEFAULT_LEVEL)


def set_verbosity(level: int | str) -> None:
    """How much tunesmith logs: ``logging.WARNING`` silences the trial lines, ``logging.DEBUG`` adds each
    model call; ``logging.INFO`` is the default. Names (``"DEBUG"``) work too."""
    logging.getLogger(ROOT).setLevel(level.upper() if isinstance(level, str) else level)


@contextmanager
def announce_if_slow(
    what: str, after_s: float = 3.0, *, logger: logging.Logger | None = None, say_done: bool = True
) -> Iterator[None]:
    """Say once, at INFO, ``still <what> (N s)...`` if the block takes longer than ``after_s``.

    A wait without a word looks like a hang: a model that loads for 30 s, a GP fit on a busy machine. Once
    announced, the end is said too (``<what>: done in N s``), unless the caller logs its own end
    (``say_done=False``). A quick block says nothing.

    Args:
        what: the wait, as a gerund phrase: ``"starting the local model"``.
        logger: where to say it (the caller's module logger), the ``agent`` logger by default.
    """
    out = logger or logging.getLogger(ROOT)
    started = time.monotonic()
    announced = threading.Event()

    def announce() -> None:
        announced.set()
        out.info("still %s (%.0f s)...", what, time.monotonic() - started)

    timer = threading.Timer(after_s, announce)
    timer.daemon = True  # a wait that never ends must not keep the interpreter alive
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if announced.is_set() and say_done:
            out.info("%s: done in %.1f s", what, time.monotonic() - started)
