"""`python -m bench [name ...]`: run every sub-benchmark (or the named ones) in turn.

A sub-benchmark is a module of this package listed in `BENCHMARKS` that defines
`run(argv: list[str]) -> None` and prints its own table. Add yours to the list.
"""

from __future__ import annotations

import importlib
import sys

#: name -> module; each prints a Markdown table ready for the README.
BENCHMARKS: dict[str, str] = {
    "kamailio": "bench.kamailio",
    "bodies": "bench.bodies",
    "edge": "bench.edge",
    "live": "bench.live",
    "chaos": "bench.chaos",
    "dialogs": "bench.dialogs",
    "edge-alone": "bench.edge_alone",
    "fanout": "bench.fanout",
    "cost": "bench.cost",
}
#: Options that take the next argument as their value (`--users 1000000`).
VALUE_OPTIONS = frozenset({"--users"})


def main(argv: list[str]) -> int:
    names: list[str] = []
    options: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in VALUE_OPTIONS:
            options += [arg, next(args, "")]
        elif arg.startswith("-"):
            options.append(arg)
        else:
            names.append(arg)
    names = names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    for name in names:
        print(f"\n## bench: {name}\n", flush=True)
        importlib.import_module(BENCHMARKS[name]).run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
