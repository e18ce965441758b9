"""The Starlette example shop: ``python -m example_apps.starlette_app``."""
