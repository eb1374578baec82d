"""Benchmarks of qs-gateway against RE Manager itself and a bare Flask app (``scripts/bench``)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: child processes import from it
