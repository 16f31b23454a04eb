"""Run kpay: ``python server.py [--config config/default.toml] [--port 8888]``."""

import argparse

from kpay.core.app import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the kpay server.")
    parser.add_argument("--config", default="config/default.toml")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    main(args.config, args.port)
