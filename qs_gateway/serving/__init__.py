"""Running the gateway: gunicorn configuration, the command line, and the demo stack."""
