"""WSGI entry point: ``gunicorn wsgi:app`` (the gunicorn configuration uses the factory itself)."""

from qs_gateway.app import create_app

app = create_app()
