"""The ``medsynth`` command line.

Every command is a thin layer over a Python function of the package, so what
the command line does can also be done (and tested) from Python.

Examples
--------
``medsynth simulate --n 500 --size 64 --seed 0 --out data/phantom``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import MedsynthError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register a sub-command: the decorated function fills its parser; ``run`` executes it."""

    def wrap(add_arguments):
        def register(run):
            COMMANDS[name] = (help, add_arguments, run)
            return run

        add_arguments.register = register
        return add_arguments

    return wrap


# --------------------------------------------------------------------------- simulate
@command("simulate", "simulate PhantomCXR chest radiographs into a folder")
def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (32-256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=Path, help="JSON file with a Population spec")
    p.add_argument("--out", type=Path, required=True, help="output folder (PNG-16 images, metadata.csv, provenance.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")


@_simulate_args.register
def _simulate(a: argparse.Namespace) -> int:
    from .phantom import Population, simulate

    population = None
    if a.population is not None:
        try:
            population = Population.from_dict(json.loads(Path(a.population).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise MedsynthError(f"cannot read population spec {str(a.population)!r}: {exc}") from exc
    ds = simulate(a.n, seed=a.seed, size=a.size, population=population)
    out = ds.to_folder(a.out, overwrite=a.overwrite)
    print(f"wrote {len(ds)} images of {a.size}x{a.size} to {out}")
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``medsynth`` with every registered sub-command."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="medsynth", description="Explore and measure medical image generators.")
    parser.add_argument("--version", action="version", version=f"medsynth-explore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_arguments, _run) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medsynth`` console script; returns the exit status.

    Errors a user can cause are printed as one line (``error: ...``) with exit
    status 2, without a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    _help, _add, run = COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except MedsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
