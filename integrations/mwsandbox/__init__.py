"""A simulator of the MessageWhiz omni API, for `make run`, the end-to-end tests and benchmarks.

It runs as its own process (`python manage.py mwsandbox`) and is never imported by production
code paths. It implements the endpoints of `reference/messagewhiz.md` as that spec documents
them, on its own (it shares no code with the provider, so the provider's mistakes show), reads
the spec's gaps one way each (the readings are listed where they are made), simulates customers
who write in, and can inject faults.
"""
