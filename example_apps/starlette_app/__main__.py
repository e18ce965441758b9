"""``python -m example_apps.starlette_app [--host H] [--port P]``: serve the shop with uvicorn."""

from __future__ import annotations

import argparse


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m example_apps.starlette_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run("example_apps.starlette_app.app:app", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
