"""Framework adapters: translate a framework's routes, session and settings into core terms."""
