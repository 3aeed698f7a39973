"""The import's memory knobs, in a module without imports so that the command-line
parsers (``transact data import ...``, ``transact bench import``) can show the importer's
own defaults without loading Arrow (:mod:`transact.data.adapters.writer` uses them)."""

BUCKET_ROWS = 500_000
"""Rows per spill bucket (``--memory-rows``): memory holds about this many rows per
worker. Pass 2's arrays of a 500k-row bucket fit the CPU caches far better than a 2M
one's (a 10^7-row import spent ~15% less CPU at 500k than at 2M); much smaller buckets
cost spill files instead."""

MAX_SPILL_BUCKETS = 512
"""The most spill files pass 1 opens at once (see
:func:`transact.data.adapters.writer.spill_buckets`)."""
