"""Aerostore: a memory-resident, durable, snapshot-isolated table store.

See docs/python.md for the API and docs/architecture.md for the layers.
"""

from .database import Database, Table, open
from .errors import (AerostoreError, ClosedError, CorruptError, DecodeError, LockedError, ReadOnlyError,
                     StorageIOError, TransientError, UsageError, WriteConflict)
from .flightstate import FlightState
from .query import Query
from .schema import Bool, Float, Int, Key, Schema, Str, UInt, table
from .txn import Transaction, TxnTable

__version__ = "0.1.0"

__all__ = [
    "open", "Database", "Table", "Transaction", "TxnTable", "Query",
    "Schema", "table", "Key", "Int", "UInt", "Float", "Str", "Bool", "FlightState",
    "AerostoreError", "UsageError", "ClosedError", "DecodeError", "TransientError", "WriteConflict",
    "StorageIOError", "ReadOnlyError", "CorruptError", "LockedError",
]
