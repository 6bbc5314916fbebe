"""Reproducible benchmarks: `python -m bench.ingest [--quick]`; results in BENCHMARKS.md.

Every figure is printed next to a baseline measured in the same run on the same machine and
database (raw `COPY` of the same rows; a bare aiohttp handler), never as a bare time
(ARCHITECTURE §5).
"""
