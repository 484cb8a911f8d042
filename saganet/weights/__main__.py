"""Command line for the weight cache: ``python -m saganet.weights {fetch,list} ...``.

Sub-commands are rows of ``SUBCOMMANDS``: a help line, a function adding its arguments and a
function running it. User errors print one line on stderr and exit with status 2;
Ctrl-C prints one line and exits with status 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from saganet.cli import CACHE_DEFAULT, terminate_cleanly
from saganet.errors import INTERRUPTED_STATUS, UserInputError, report_user_error
from saganet.weights.cache import entry_status, fetch_group
from saganet.weights.registry import GROUPS, REGISTRY, Entry, HubRepo


@dataclass(frozen=True)
class Tables:
    """The registry and groups a command works on (the published ones unless a test swaps)."""

    registry: Mapping[str, Entry]
    groups: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Subcommand:
    """One sub-command: its help, its arguments, and what it does (returns the exit status)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser, Tables], None]
    run: Callable[[argparse.Namespace, Tables], int]


def _add_weights_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights_dir", default=None,
                        help=f"cache folder (default: {CACHE_DEFAULT})")


def _fetch_arguments(parser: argparse.ArgumentParser, tables: Tables) -> None:
    parser.add_argument("group", help=f"one of: {', '.join(tables.groups)}")
    _add_weights_dir(parser)
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never use the network; report what is missing and where it goes")


def _fetch(args: argparse.Namespace, tables: Tables) -> int:
    paths = fetch_group(args.group, args.weights_dir, args.offline,
                        registry=tables.registry, groups=tables.groups)
    if not paths:
        # The debug variant: its random weights are generated, not downloaded.
        print(f"group {args.group}: nothing to download (its weights are generated on first "
              f"use; `python -m saganet.debug_weights` writes them now)")
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


def _list_arguments(parser: argparse.ArgumentParser, tables: Tables) -> None:
    _add_weights_dir(parser)
    parser.add_argument("--verify", action="store_true",
                        help="hash present files that were not verified yet (slow)")


def _list(args: argparse.Namespace, tables: Tables) -> int:
    width = max((len(name) for name in tables.registry), default=0)
    for name, entry in tables.registry.items():
        state, path = entry_status(entry, args.weights_dir, verify=args.verify)
        checksum = "hub" if isinstance(entry, HubRepo) else (entry.md5 or "no md5")
        print(f"{name:<{width}}  {state:<11}  {checksum:<32}  {path}")
    print()
    for group, names in tables.groups.items():
        print(f"group {group}: {', '.join(names) if names else '(nothing to download)'}")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "fetch": Subcommand("download (or, offline, check) everything a group needs",
                        _fetch_arguments, _fetch),
    "list": Subcommand("show the registry, what is present and the groups",
                       _list_arguments, _list),
}


def main(argv: Sequence[str] | None = None, *, registry: Mapping[str, Entry] | None = None,
         groups: Mapping[str, tuple[str, ...]] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: arguments without the program name; ``sys.argv[1:]`` when None.
        registry: registry to use instead of the published one.
        groups: group table to use instead of the published one.
    """
    tables = Tables(REGISTRY if registry is None else registry,
                    GROUPS if groups is None else groups)
    parser = argparse.ArgumentParser(prog="python -m saganet.weights",
                                     description="Manage SAGANet's published weights.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, sub in SUBCOMMANDS.items():
        sub.add_arguments(commands.add_parser(name, help=sub.help), tables)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        # SIGTERM too removes a half-downloaded file and the lock (as Ctrl-C does).
        with terminate_cleanly():
            return SUBCOMMANDS[args.command].run(args, tables)
    except UserInputError as err:
        return report_user_error("python -m saganet.weights", err)
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, as in the other commands: one line, the shell's status
        # (on a line of its own: a progress bar may hold the current one). The download
        # removed its part on the way out.
        print("\npython -m saganet.weights: interrupted; files already in place are kept, "
              "the one being downloaded is not", file=sys.stderr)
        return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
