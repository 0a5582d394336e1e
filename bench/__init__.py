"""`make bench`: how fast Switchboard is, as ratios against baselines measured in the same run.

`python -m bench [--quick]` starts the production process set (uvicorn workers, a Celery
worker, the platform sandbox) against a database of its own, runs each stage, prints a table
and writes JSON to `var/bench/`. Nothing here is imported by the product, except the baseline
endpoints in `bench.urls`, mounted only when the `BENCH_ENDPOINTS` setting is on.
"""
