"""Shared fixtures.  Keep this small: test files define what only they need."""

import pytest

import aerostore
from aerostore import FlightState


@pytest.fixture
def mem_db():
    """An in-memory database, closed after the test."""
    d = aerostore.open(":memory:")
    yield d
    d.close()


@pytest.fixture
def flights(mem_db):
    """The FlightState table (default indexes) of ``mem_db``, empty."""
    return mem_db.create_table(FlightState)


def vacuum_now(db) -> None:
    """Prune everything the horizon allows, now: wait for the maintainer (it
    vacuums for readers in the background), then vacuum in this thread."""
    assert db._maint.idle(10), "the maintainer did not go idle"
    db._vacuum(block=True)
