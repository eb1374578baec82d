"""The reference's own published test suites, run unchanged against the gateway (``scripts/conformance``)."""
