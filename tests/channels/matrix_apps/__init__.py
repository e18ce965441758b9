"""Tiny apps for ``test_leak_matrix.py``: the same careless handlers in Starlette, Flask, Django.

Every framework serves the same routes; none echoes the request in its response:

- ``POST /signup`` logs the payload, the query and the ``Authorization`` header; 201.
- ``POST /boom/name`` raises an f-string ``RuntimeError`` quoting the name and token; 500.
- ``POST /boom/db`` raises a database-style error (``DETAIL: Key (email)=(...)``); 500.
- ``POST /boom/schema`` raises a ``jsonschema.ValidationError`` on the card; 500.
- ``GET /healthz`` answers ``{"ok": true}`` (readiness, and log markers for real servers).
"""
