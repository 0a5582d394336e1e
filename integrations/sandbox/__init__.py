"""A simulator of the Mehery XMS platform, for `make run`, the end-to-end tests and benchmarks.

It runs as its own process (`python manage.py sandbox`) and is never imported by production
code paths. It implements the endpoints we call as `reference/mehery-xms.md` documents them,
simulates customers who write in, and can inject faults.
"""
