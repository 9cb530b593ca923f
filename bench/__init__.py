"""Benchmarks of the Pact suite (``python -m bench``, ``make bench``; never part of ``make test``).

Every suite measures *ratios* inside one run, because these machines are shared and noisy:

* ``provider``   -- INTENT → ASK at ``POST /pact`` against a bare Starlette *floor* app that
  only parses, verifies one envelope and signs one reply (``bench.floor_app``);
* ``settlement`` -- ACCEPT → locked on Postgres against ``pgbench`` (TPC-B-like) at the same
  client counts;
* ``growth``     -- p99 of settlement create/read with 10 000 vs 1 000 000 rows, plus
  ``EXPLAIN (ANALYZE, BUFFERS)`` of the hot queries.

Results: ``bench/results/<suite>.json`` (machine-readable) and ``bench/results/latest.md`` (+ a PNG
chart), rendered from the newest JSON of each suite.
"""
