"""The read gate: what lets the Tcl shim's ``FlightState get`` (and
``array_get``, ``array_get_with_nulls``, ``exists``) read a settled row
without the GIL while Python threads write the table.

Why: under a live feed the GIL is what a query waits for.  A ``get`` needs
a few microseconds of work, but waited for the GIL behind the feed's install
and the other readers' queries: p99 6-7 ms with two readers (the live-feed
issue).  The shim (c_shim/rowget.c) now looks the key up in the table's
``KeyMap`` and reads the row's values from its ``Columns`` in C, holding no
GIL, whenever the slot is settled; anything else takes the GIL path.

What such a reader reads, and the rule that keeps each whole (writers hold
the GIL; ``_readgate.h`` has the counters and the reader's side):

- the KeyMap's arrays: whatever moves or frees them holds the gate, and a
  removed key is let go only after ``drain`` (``_keymap.c``);
- a slot's state and values in the columns (columns.py): values are written,
  and a slot made FROZEN, only inside ``hold()``/``release()`` (the heap's
  ``freezing`` sections, which also bump ``fseq``); a thaw (a slot getting a
  version chain) writes its state before the commit is published, so a reader
  that saw FROZEN read the row every snapshot sees until then;
- the objects it starts from (the KeyMap, the columns' arrays): the shim
  keeps its own references to them in a view, tagged with ``layout``; a
  writer that rebinds them (``Columns._publish``, ``TableStore._adopt``, the
  Tcl bridge's store, ``Database.close``) calls ``changed()`` after, and a view
  of an older layout is rebuilt under the GIL before it is used again.

Functions (each called with the GIL held; O(1) unless a reader is inside,
for about a microsecond):

- ``hold()``: no reader without the GIL is inside until the matching
  ``release()``; nests.  Readers that arrive meanwhile wait a little, then
  take the GIL path;
- ``release()``: end the outermost hold (RuntimeError without one);
- ``changed()``: views built before are stale; waits for readers inside;
- ``drain()``: waits until no reader is inside;
- ``stats()``: a dict of the counters (``holds``; ``answered``,
  ``fell_back`` and ``waited``: gets answered without the GIL, sent to the
  GIL path, and that waited for a hold to end).

One gate per process: a hold on any table keeps readers of every table out
for its length.  The cost to writers: two C calls per freezing section, and a
wait while a reader is inside (a reader descheduled there makes it a time
slice; it never waits for a writer).
"""

from ._keymap import changed, drain, hold, release, stats

__all__ = ["hold", "release", "changed", "drain", "stats"]
