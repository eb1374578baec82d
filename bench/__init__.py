"""Benchmarks of qs-gateway against RE Manager itself and a bare Flask app (``scripts/bench``)."""
