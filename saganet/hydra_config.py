"""Hydra plumbing shared by ``train.py`` and ``batch_eval.py``: typed schemas, the ``paths``
group, and one-line errors for configuration mistakes.

**Where defaults live.** Every default is written once, in the schema dataclasses
(:class:`saganet.training.config.TrainConfig`, :class:`saganet.evaluation.batch_config.
BatchEvalConfig`, :class:`PathsConfig`). They are registered in Hydra's ConfigStore and are
the first entry of the entry point's defaults list, so the YAML files under ``config/`` hold
only what the schema cannot know: the alternatives of a group (``model/small.yaml``,
``data/sms.yaml``...), the deltas of an experiment, interpolations that wire groups together
(``${paths.data_dir}``) and Hydra's own settings. Fields whose value a group chooses have no
default in the dataclass, so a value is never written both in Python and in YAML. Dataclasses
rather than YAML are the source because they carry the types and the documentation of each
value, work from Python without Hydra, and every ``key=value`` override is then type-checked
by Hydra before anything runs. ``tests/test_hydra_config.py`` checks that no YAML file repeats
a schema default.

**Errors.** Hydra reports a bad override or an unknown experiment in its own multi-line format
with exit status 1. :func:`preflight` composes the configuration before Hydra starts (and
before it creates the run directory), so such mistakes print the one-line ``prog: error:
...`` of every other entry point and exit with status 2. :func:`user_errors` does the same for
:class:`~saganet.errors.UserInputError` raised inside the run, and removes the run directory
when this invocation created it and wrote nothing into it but Hydra's own files.

**Hydra's files.** A run directory can serve several invocations (a resumed training run):
:func:`preflight` points each later one's ``hydra.output_subdir`` to a folder of its own
(:func:`invocation_output_subdir`), so the configuration of every invocation stays on disk.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from saganet.errors import (
    INTERRUPTED_STATUS,
    USER_ERROR_STATUS,
    UserInputError,
    report_user_error,
)
from saganet.fileio import nearest_existing

log = logging.getLogger(__name__)

T = TypeVar("T")
HYDRA_OUTPUT_SUBDIR = ".hydra"
RESUME_PREFIX = "resume-"
# How long the other ranks of a torchrun job wait for rank 0 to report a configuration error
# that they share (torchrun stops them as soon as rank 0 exits).
OTHER_RANKS_WAIT_S = 5.0
# How gloo says that a peer process of a collective has ended.
PEER_LOST_MESSAGES = ("Connection closed by peer", "Connection reset by peer")


@dataclass(kw_only=True)
class PathsConfig:
    """Where things live on this machine: the ``paths`` group of ``train.py`` and
    ``batch_eval.py`` (registered by :func:`register_schema` as its ``default`` option, so both
    config folders see it). Override on the command line, e.g. ``paths.data_dir=/scratch``.

    Args:
        data_dir: root of the prepared datasets (``<data_dir>/sms/...``, ``<data_dir>/urmp/...``).
        output_dir: parent of the run directories.
        weights_dir: weights cache; None = ``$SAGANET_CACHE``, else the user cache folder
            (``$XDG_CACHE_HOME/saganet`` or ``~/.cache/saganet``).
    """

    data_dir: str = "./data"
    output_dir: str = "./output"
    weights_dir: str | None = None


PATHS_GROUP = "paths"


def register_schema(name: str, node: type) -> None:
    """Put a schema dataclass into Hydra's ConfigStore under ``name``, and the ``paths``
    group's ``default`` option beside it (idempotent).

    Args:
        name: the name a defaults list refers to.
        node: the dataclass.
    """
    store = ConfigStore.instance()
    store.store(name=name, node=node)
    store.store(group=PATHS_GROUP, name="default", node=PathsConfig)


def to_typed(cfg: DictConfig, cls: type[T], **values: Any) -> T:
    """The composed config as an instance of its schema dataclass.

    Args:
        cfg: a config composed with the schema of ``cls`` (``hydra`` node excluded).
        cls: the schema dataclass.
        values: fields set here (e.g. the run directory Hydra chose), merged before converting.

    Raises:
        UserInputError: a required value is missing, a key is unknown, or a value has the
            wrong type.
    """
    # Merged as plain data into a fresh schema: a key that Hydra let in with "+key=..." is
    # then an error instead of being dropped silently by the conversion.
    data = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), data, values)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise UserInputError(f"invalid configuration: {_one_line(err)}") from err
    assert isinstance(config, cls)
    return config


def _one_line(err: BaseException) -> str:
    """Hydra and OmegaConf messages span several lines (hints, option lists) and keep the
    reason in the exception's cause: one line with both, without the config search path."""
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None:
        text = str(current).split("Config search path")[0]
        if "full_key:" in text:  # OmegaConf appends the node's internals
            text = text.split("full_key:")[0]
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            parts.append("; ".join(lines).replace(":;", ":").replace(".;", ".").rstrip(";"))
        current = current.__cause__
    return ": ".join(parts)


@dataclass
class RunDirRecord:
    """The run directory of this invocation and what existed before Hydra created it.

    Args:
        path: the run directory.
        existing_parent: the nearest folder at or above ``path`` that existed beforehand.
        new_config_dir: the folder of this invocation's Hydra files when it did not exist
            beforehand (e.g. ``.hydra/resume-2`` of a run being resumed), else None.
        started: when this invocation started (``time.time()``); in an existing run directory
            only files written since then count as written by this invocation.
    """

    path: Path
    existing_parent: Path
    new_config_dir: Path | None = None
    started: float = 0.0

    @property
    def created(self) -> bool:
        return self.existing_parent != self.path

    def clean_up(self, log_names: Sequence[str]) -> bool:
        """Remove what this invocation made before it failed, unless it wrote a file of its own.

        A run directory this invocation created goes entirely; in a run directory that existed,
        only this invocation's new Hydra files folder goes (a failed command on an existing run
        would otherwise leave a ``resume-<n>`` folder describing a run that never happened).
        Hydra's files are the ``.hydra`` folder and the log files ``log_names``; any other file
        this invocation wrote (a training state, an event file, generated audio) keeps
        everything in place. Empty parent folders created for the run directory are removed
        too. Returns whether anything was removed.

        Args:
            log_names: glob patterns of the log files Hydra writes in the run directory.
        """
        if not self.path.is_dir() or self._wrote_own_files(log_names):
            return False
        if not self.created:
            if self.new_config_dir is None or not self.new_config_dir.is_dir():
                return False
            shutil.rmtree(self.new_config_dir, ignore_errors=True)
            return True
        for handler in logging.getLogger().handlers:
            # Close Hydra's file handlers before their files go away.
            if isinstance(handler, logging.FileHandler) and Path(
                    handler.baseFilename).parent == self.path:
                handler.close()
        shutil.rmtree(self.path, ignore_errors=True)
        folder = self.path.parent
        while folder != self.existing_parent and folder.is_dir():
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent
        return True

    def _wrote_own_files(self, log_names: Sequence[str]) -> bool:
        """Whether the run directory holds a file other than Hydra's that this invocation
        wrote (any such file when it created the directory)."""
        since = float("-inf") if self.created else self.started
        hydra_files = {p for pattern in log_names for p in self.path.glob(pattern)}
        hydra_dir = self.path / HYDRA_OUTPUT_SUBDIR
        for path in self.path.rglob("*"):
            if hydra_dir in path.parents or path == hydra_dir or path in hydra_files:
                continue
            try:
                if path.is_file() and path.stat().st_mtime >= since:
                    return True
            except OSError:  # removed meanwhile
                continue
        return False


def rename_overrides(argv: Sequence[str], renames: dict[str, str]) -> list[str]:
    """Command-line overrides with other programs' key names replaced by ours.

    Lets a command written for the reference implementation run unchanged (e.g. its
    ``duration_s=5`` for our ``duration``), while the config itself has one name per value.

    Args:
        argv: the command line without the program.
        renames: reference key -> our key (top-level keys).

    Raises:
        UserInputError: both names of one setting are given, with different values (Hydra
            would silently keep the later one).
    """
    given = {key: value for key, sep, value in (arg.partition("=") for arg in argv) if sep}
    for theirs, ours in renames.items():
        if theirs in given and ours in given and given[theirs] != given[ours]:
            raise UserInputError(f"{theirs}={given[theirs]} and {ours}={given[ours]} set the "
                                 f"same setting ({theirs} is the reference's name for {ours}); "
                                 f"give one of them")
    renamed = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in renames:
            log.info("%s is this program's %s", key, renames[key])
            arg = f"{renames[key]}={value}"
        renamed.append(arg)
    return renamed


_RUN_DIR: RunDirRecord | None = None


def invocation_output_subdir(run_dir: Path, output_subdir: str | None,
                             rank: int) -> str | None:
    """Where this invocation writes Hydra's files, so that none overwrites an earlier one's.

    Hydra writes ``config.yaml``, ``overrides.yaml`` and ``hydra.yaml`` into
    ``<run_dir>/<output_subdir>`` on every invocation, and a run directory serves several (a
    resumed training run): the first keeps ``output_subdir``, each later one takes the next
    ``<output_subdir>/resume-<n>`` (n = 1, 2...). Only global rank 0 writes them: under
    ``torchrun`` the ranks would otherwise race to choose the folder.

    Args:
        run_dir: the run directory.
        output_subdir: ``hydra.output_subdir`` as configured (None: no files).
        rank: this process's global rank.

    Returns:
        The ``hydra.output_subdir`` of this invocation (None: no files).
    """
    if output_subdir is None or rank != 0:
        return None
    folder = run_dir / output_subdir
    if not (folder / "config.yaml").is_file():
        return output_subdir
    numbers = [path.name.removeprefix(RESUME_PREFIX) for path in folder.glob(f"{RESUME_PREFIX}*")]
    taken = [int(number) for number in numbers if number.isdigit()]
    return f"{output_subdir}/{RESUME_PREFIX}{max(taken, default=0) + 1}"


def check_run_dir(run_dir: Path, name: str = "run directory") -> None:
    """Raise a :class:`UserInputError` when Hydra could not make ``run_dir`` or write its log
    file there.

    Hydra creates the run directory and opens its log file before the program runs, so these
    mistakes would otherwise end in Hydra's traceback (FileExistsError, PermissionError,
    "Unable to configure handler 'file'").

    Args:
        run_dir: the run directory.
        name: what the message calls it (the setting it comes from, e.g. ``run_dir``).
    """
    parent = nearest_existing(run_dir)
    is_dir = os.path.isdir(parent)
    # Write to add entries, search to reach them: both are needed to make the log file.
    writable = os.access(parent, os.W_OK | os.X_OK)
    if parent == run_dir:
        if not is_dir:
            raise UserInputError(f"{name} exists and is not a folder", run_dir)
        if not writable:
            raise UserInputError(f"{name} is a folder this user cannot write to", run_dir)
    elif not is_dir:
        raise UserInputError(f"{name} cannot be created: {parent} is not a folder", run_dir)
    elif not writable:
        raise UserInputError(f"{name} cannot be created: {parent} is not writable", run_dir)


def preflight(prog: str, config_dir: str | Path, config_name: str,
              register: Callable[[], None], argv: Sequence[str] | None = None,
              run_dir_name: str = "run directory") -> list[str]:
    """Compose the configuration as Hydra will, before Hydra starts; exit 2 on a mistake,
    including a run directory that Hydra could not make or write to (:func:`check_run_dir`).

    Also records the run directory and what existed before it, for :func:`user_errors`, and
    chooses where this invocation's Hydra files go (:func:`invocation_output_subdir`).
    With ``--cfg`` (print the configuration) or ``-m`` (a sweep: every value of each swept
    key is checked) only the overrides are checked, as those make no run directory of ours;
    with ``--cfg ... --resolve`` the configuration must resolve too. Flags that print help or
    choose another config (``--help``, ``--info``, ``--config-name``...) are left to Hydra.

    Args:
        prog: the program name in error messages.
        config_dir: absolute path of the config folder.
        config_name: the primary config.
        register: puts the schema into the ConfigStore.
        argv: the command line without the program (default ``sys.argv[1:]``).
        run_dir_name: what errors about the run directory call it (the setting it comes from).

    Returns:
        Overrides to append to the command line Hydra reads (``hydra.output_subdir``).
    """
    global _RUN_DIR
    started = time.time()
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException

    register()
    # Hydra's own parser, so that the overrides are told from its flags as Hydra tells them
    # (an argparse mistake exits here with the message Hydra would print). It is not public
    # API: requirements.txt keeps hydra-core below 1.4 for it.
    args = get_args_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if _left_to_hydra(args):
        return []
    overrides = list(args.overrides)
    if args.cfg or args.multirun:
        try:
            _check_search_path(overrides)
            with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
                for job in _sweep_jobs(overrides) if args.multirun else [overrides]:
                    cfg = compose(config_name=config_name, overrides=job,
                                  return_hydra_config=True)
                    if args.resolve:
                        HydraConfig.instance().set_config(cfg)
                        _check_resolves(cfg, args.cfg)
        except (HydraException, OmegaConfBaseException) as err:
            sys.exit(_report(prog, UserInputError(_without_plus_hint(_one_line(err))),
                             every_rank=True))
        except UserInputError as err:
            sys.exit(_report(prog, err, every_rank=True))
        return []
    try:
        _check_search_path(overrides)
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides,
                          return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            run_dir = Path(str(cfg.hydra.run.dir))
            configured = cfg.hydra.output_subdir
        check_run_dir(run_dir, run_dir_name)
    except (HydraException, OmegaConfBaseException) as err:
        sys.exit(_report(prog, UserInputError(_without_plus_hint(_one_line(err))),
                         every_rank=True))
    except UserInputError as err:
        sys.exit(_report(prog, err, every_rank=True))
    subdir = invocation_output_subdir(run_dir, configured, _launcher_rank())
    files_dir = None if subdir is None else run_dir / subdir
    _RUN_DIR = RunDirRecord(run_dir, nearest_existing(run_dir),
                            None if files_dir is None or files_dir.exists() else files_dir,
                            started)
    if subdir == configured:
        return []
    return [f"hydra.output_subdir={'null' if subdir is None else hydra_quoted(subdir)}"]


def _left_to_hydra(args: Any) -> bool:
    """Whether Hydra's flags ``args`` print help or information, or read another config than
    the entry point's: Hydra handles those command lines itself."""
    return bool(args.help or args.hydra_help or args.info or args.shell_completion
                or args.experimental_rerun or args.config_path or args.config_name
                or args.config_dir)


def _sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """Override lists that together contain every value of every swept key once: the first
    values of all sweeps, then each further value of one sweep with the others at their first
    (a linear number of compositions, not the whole grid). Sweeps that cannot be listed
    before Hydra runs (``glob``, ``interval``) are left out; Hydra checks those itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    fixed: list[str] = []
    swept: list[tuple[str, list[str]]] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:
            continue
        if values:
            key = override.get_key_element()
            swept.append((key, [f"{key}={value}" for value in values]))
    first = [values[0] for _, values in swept]
    jobs = [fixed + first]
    for index, (_, values) in enumerate(swept):
        for value in values[1:]:
            jobs.append(fixed + first[:index] + [value] + first[index + 1:])
    return jobs


def _check_resolves(cfg: DictConfig, kind: str) -> None:
    """Raise a :class:`UserInputError` when ``--cfg <kind> --resolve`` could not resolve the
    composed configuration (Hydra would print its traceback)."""
    job = copy.deepcopy(cfg)  # keeps the schema's types, which resolved values must match
    with open_dict(job):
        del job["hydra"]
    try:
        OmegaConf.resolve(job)
    except OmegaConfBaseException as err:
        raise UserInputError(f"--cfg {kind} --resolve: {_one_line(err)}; values Hydra sets "
                             f"only when the run starts cannot be resolved: print with "
                             f"--cfg {kind} alone") from err


# Hydra's hint for a key it cannot override, followed by the reason.
_PLUS_HINT = re.compile(r"\. To append to your config use \+\S+(?=: Key '[^']+' not in '\w+')")


def _without_plus_hint(message: str) -> str:
    """``message`` without Hydra's "use +key=value" hint where the schema has no such field:
    the "+" only leads to a second refusal when the configuration is converted. (A key missing
    from a mapping, "not in struct", keeps the hint: there "+" or "++" is the way.)"""
    return _PLUS_HINT.sub("", message)


def _check_search_path(overrides: Sequence[str]) -> None:
    """Raise a :class:`UserInputError` for a ``hydra.searchpath`` folder that does not exist:
    Hydra only warns and goes on without it, so the options in it were reported as missing
    from ``config/`` with no word of the folder."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [arg for arg in overrides if arg.lstrip("+~").startswith("hydra.searchpath=")]
    for override in OverridesParser.create().parse_overrides(given):
        entries = override.value()
        for entry in entries if isinstance(entries, list) else [entries]:
            entry = str(entry)
            if "://" in entry and not entry.startswith("file://"):
                continue  # pkg:// and other providers are not folders to check
            folder = Path(entry.removeprefix("file://"))
            if not folder.is_dir():
                raise UserInputError("hydra.searchpath folder not found", folder)


def hydra_quoted(text: str) -> str:
    """``text`` as a quoted value of a Hydra command-line override, read back unchanged.

    In Hydra's quoted strings a backslash is literal except before a quote or at the end, so
    those runs are doubled and the quotes escaped (Python's ``repr`` escapes every backslash,
    which Hydra then keeps doubled). ``${...}`` is left alone: Hydra interpolates it, as it
    does in the configured value itself.
    """
    escaped = re.sub(r"(\\*)'", lambda match: match[1] * 2 + "\\'", text)
    escaped = re.sub(r"(\\+)$", lambda match: match[1] * 2, escaped)
    return f"'{escaped}'"


@contextmanager
def user_errors(prog: str, log_names: Sequence[str], interrupted: str = "") -> Iterator[None]:
    """Turn a :class:`UserInputError` into ``prog: error: ...`` and exit status 2, and Ctrl-C
    (a KeyboardInterrupt that reaches here) into ``prog: interrupted...`` and exit status 130,
    without a traceback.

    The run directory is removed when this invocation created it and nothing but Hydra's
    files are in it, else this invocation's new Hydra files (see :meth:`RunDirRecord.clean_up`).

    Args:
        prog: the program name in the message.
        log_names: glob patterns of Hydra's log files in the run directory.
        interrupted: what the Ctrl-C line adds after ``interrupted`` (e.g. what was kept).
    """
    try:
        yield
    except UserInputError as err:
        if _RUN_DIR is not None:
            _RUN_DIR.clean_up(log_names)
        sys.exit(_report(prog, err, every_rank=err.every_rank))
    except KeyboardInterrupt:
        if _RUN_DIR is not None:
            _RUN_DIR.clean_up(log_names)
        # torchrun passes Ctrl-C to every rank: one line is enough.
        if _launcher_rank() == 0:
            print(f"{prog}: interrupted{interrupted}", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    except RuntimeError as err:
        if not _lost_a_failed_rank(err):
            raise
        # Another rank failed and said why; this one only lost its connection while waiting
        # for it. Its traceback would bury that message, and exiting first would make
        # torchrun name this rank as the root cause: it waits to be stopped instead.
        time.sleep(OTHER_RANKS_WAIT_S)
        print(f"{prog}: error: another rank failed (see its error); rank {_launcher_rank()} "
              "stopped", file=sys.stderr)
        sys.exit(1)


@contextmanager
def configuration_errors() -> Iterator[None]:
    """Mark the :class:`UserInputError` raised inside as one every rank raises (see
    :func:`user_errors`): code that only reads the configuration."""
    try:
        yield
    except UserInputError as err:
        err.every_rank = True
        raise


def _lost_a_failed_rank(err: RuntimeError) -> bool:
    """``err`` is a gloo collective of a multi-process job that failed because a peer
    process ended. (With NCCL the waiting ranks raise nothing: torchrun stops them.)"""
    return (int(os.environ.get("WORLD_SIZE", "1")) > 1
            and any(sign in str(err) for sign in PEER_LOST_MESSAGES))


def _launcher_rank() -> int:
    """This process's global rank as torchrun sets it (0 without torchrun). The variable is
    read directly: saganet.dist imports torch, which a command line that is about to be
    refused, or a one-line report, should not wait for."""
    return int(os.environ.get("RANK", "0"))


def _report(prog: str, err: UserInputError, every_rank: bool) -> int:
    """Report ``err`` (see :func:`saganet.errors.report_user_error`) and return exit status 2;
    an error raised on every rank of a ``torchrun`` job is printed by rank 0 alone."""
    if every_rank and _launcher_rank() != 0:
        # torchrun stops every process once one fails: the others wait for rank 0 to print
        # and exit first, so that it is named as the root cause and is not stopped mid-way.
        time.sleep(OTHER_RANKS_WAIT_S)
        return USER_ERROR_STATUS
    return report_user_error(prog, err)
