"""Open a local HTML file in headless Chromium and report what went wrong there: console errors, uncaught
exceptions, resources that failed to load. Also evaluates expressions in the page, and writes a full-page
screenshot.

Standard library only: the DevTools protocol spoken over ``--remote-debugging-pipe``, where Chromium reads
commands on its fd 3 and writes replies and events on its fd 4, each message JSON ended by a NUL byte. No
websocket client, no Playwright, no port. Host names resolve to nothing (``--host-resolver-rules``), so a
page that reaches for the network fails to load it, and says so, instead of quietly fetching it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Runs in the child before Chromium: moves the two pipe ends onto fds 3 and 4, where Chromium looks for them,
#: then becomes Chromium. The ends are first copied above 9, since the pipes may themselves be fds 3 or 4
#: (``dup2`` of a fd onto itself would leave it close-on-exec). A ``preexec_fn`` could do the same, but is not
#: safe in a process that has threads, as a test run does.
_ONTO_3_AND_4 = """\
import fcntl, os, sys
commands, events = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
for fd in sys.argv[1:3]:
    os.close(int(fd))
os.dup2(commands, 3)
os.dup2(events, 4)
os.close(commands)
os.close(events)
os.execv(sys.argv[3], sys.argv[3:])
"""

_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI containers run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
)


@dataclass
class PageCheck:
    """What opening a page showed: its problems (empty for a clean page) and the values of the expressions."""

    problems: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class _DevTools:
    """The two ends of the DevTools pipe: commands out, replies and events in (events kept for later)."""

    def __init__(self, commands: int, replies: int, log: Path) -> None:
        self._commands = commands
        self._replies = replies
        self._log = log
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None at ``deadline``."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._replies], [], [], left)
            if ready:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    tail = self._log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Chromium closed the DevTools pipe; its stderr ended with:\n{tail}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        result: dict[str, Any] = json.loads(message)
        return result

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Send a command and wait for its reply; the events that arrive meanwhile are kept."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while (reply := self._read(deadline)) is not None:
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)
        raise TimeoutError(f"no reply to {method} in {timeout} s")

    def wait_for(self, method: str, timeout: float) -> bool:
        """Wait until the event ``method`` has arrived (perhaps already)."""
        if any(e.get("method") == method for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while (event := self._read(deadline)) is not None:
            self.events.append(event)
            if event.get("method") == method:
                return True
        return False

    def collect(self, seconds: float) -> None:
        """Keep the events of the next ``seconds``: what timers and late loads report."""
        deadline = time.monotonic() + seconds
        while (event := self._read(deadline)) is not None:
            self.events.append(event)


def check_page(
    chromium: str,
    page: Path,
    screenshot: Path,
    evaluate: Sequence[str] = (),
    width: int = 1200,
    height: int = 900,
    settle_s: float = 0.5,
) -> PageCheck:
    """Open ``page`` in headless ``chromium``, wait for it to load and settle, evaluate each expression of
    ``evaluate`` in it, and write a full-page PNG to ``screenshot``.

    Raises:
        RuntimeError: Chromium exited or refused a command.
        TimeoutError: the page did not load within 30 s.
    """
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        log = Path(profile) / "stderr.log"
        with log.open("wb") as stderr:
            browser = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _ONTO_3_AND_4,
                    str(commands_read),
                    str(replies_write),
                    chromium,
                    *_FLAGS,
                    f"--user-data-dir={profile}/profile",
                    f"--window-size={width},{height}",
                    "about:blank",
                ],
                pass_fds=(commands_read, replies_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        os.close(commands_read)
        os.close(replies_write)
        devtools = _DevTools(commands_write, replies_read, log)
        try:
            values = _visit(devtools, page, screenshot, evaluate, width, height, settle_s)
        finally:
            os.close(commands_write)
            os.close(replies_read)
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
    return PageCheck(_problems(devtools.events), values)


def _visit(
    devtools: _DevTools,
    page: Path,
    screenshot: Path,
    evaluate: Sequence[str],
    width: int,
    height: int,
    settle_s: float,
) -> dict[str, Any]:
    """Load ``page`` in a new tab, evaluate the expressions, take the screenshot, close the browser."""
    target = devtools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = devtools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        devtools.send(f"{domain}.enable", session=session)
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    devtools.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
    devtools.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    if not devtools.wait_for("Page.loadEventFired", timeout=30):
        raise TimeoutError(f"{page} did not load in 30 s")
    devtools.collect(settle_s)
    values = {}
    for expression in evaluate:
        reply = devtools.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        values[expression] = reply["result"].get("value")
    size = devtools.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": max(width, size["width"]), "height": size["height"], "scale": 1}
    shot = devtools.send(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session=session
    )
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    devtools.collect(0.05)
    with contextlib.suppress(RuntimeError, TimeoutError):  # it may close the pipe before replying
        devtools.send("Browser.close", timeout=5)
    return values


def _problems(events: Sequence[dict[str, Any]]) -> list[str]:
    """One line per console error or assertion, uncaught exception, and error logged by the browser itself
    (a resource that failed to load, a blocked request); ``console.log`` is not a problem."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            found.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            found.append(f"exception at line {details.get('lineNumber')}: {text.splitlines()[0] if text else ''}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            found.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".rstrip())
    return found
