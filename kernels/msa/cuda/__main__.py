"""``python -m kernels.msa.cuda build [--cache DIR] [--cutlass-include DIR]``: build the sm_90a tile-outer library
ahead of serving (the default ``tile_impl="auto"`` uses it only once built). Prints the library path, or one line
saying why it cannot be built (exit status 1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernels.msa import cuda


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.msa.cuda", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--cache", type=Path, default=None, help=f"library folder (default {cuda.default_cache()})")
    parser.add_argument("--cutlass-include", type=Path, default=None, help="CUTLASS headers, if not from the wheel")
    args = parser.parse_args(argv)
    try:
        print(cuda.build(args.cache, args.cutlass_include))
    except cuda.CudaBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the first line says why; nvcc's log follows
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
