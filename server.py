"""Run kpay: ``python server.py [--config config/default.toml] [--port 8888] [--workers N]``.

The same as ``kpay --config ... serve --port ...``: a bad config stops with a one-line
message naming the key (exit status 2), not a traceback.
"""

import argparse
import sys

from kpay.cli import DEFAULT_CONFIG
from kpay.cli import main as kpay
from kpay.core.workers import parse_workers

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the kpay server.")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=parse_workers, default=None)
    args = parser.parse_args()
    port = [] if args.port is None else ["--port", str(args.port)]
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    sys.exit(kpay(["--config", args.config, "serve", *port, *workers]))
