"""Fixtures for model tests; tests/conftest.py imports them."""

from __future__ import annotations

import pytest
from tests.support.fake_openai import FakeOpenAI, Step


@pytest.fixture
def fake_openai():
    """`fake_openai(script)` starts a FakeOpenAI server; all are closed at teardown."""
    servers: list[FakeOpenAI] = []

    def start(script: list[Step]) -> FakeOpenAI:
        server = FakeOpenAI(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
