"""Fixtures for the model-backend tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.testing.misbehaving_server import MisbehavingServer


@pytest.fixture
def misbehaving_server() -> Iterator[MisbehavingServer]:
    """A started :class:`MisbehavingServer` with an empty script: ``push`` behaviours, then point a client at
    ``base_url``. Stopped (and its port released) after the test."""
    server = MisbehavingServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
