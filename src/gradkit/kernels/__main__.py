"""``python -m gradkit.kernels --warm``: compile the kernels now (see :mod:`gradkit.kernels.warm`)."""

from __future__ import annotations

import argparse
import sys

from .warm import warm


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``; with ``--warm`` compile the kernels and say how long it took (exit 0), else usage (2)."""
    parser = argparse.ArgumentParser(prog="python -m gradkit.kernels",
                                     description="gradkit's numba kernels: compile them ahead of their first use.")
    parser.add_argument("--warm", action="store_true", help="compile (or load from numba's cache) every kernel now")
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"],
                        help="only this dtype (repeatable; default both)")
    args = parser.parse_args(argv)
    if not args.warm:
        parser.print_usage(sys.stderr)
        print("python -m gradkit.kernels: error: nothing to do; pass --warm", file=sys.stderr)
        return 2
    result = warm(tuple(args.dtype or ("float32", "float64")))
    if not result["kernels"]:
        print("the numba kernels are not in use (numba missing, or GRADKIT_DISABLE_NUMBA set): nothing to compile")
        return 0
    print(f"{result['compiled']} of {result['kernels']} kernels ready in {result['seconds']:.1f} s "
          "(compiled, or loaded from numba's cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
