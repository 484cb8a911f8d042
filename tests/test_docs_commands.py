"""Every command line in the user documentation parses with the command it names.

README.md and docs/*.md show commands (fenced shell blocks and inline code spans). Each one
that runs a script or module of this repository (``python demo.py ...``, ``python -m
saganet.batch ...``, ``torchrun ... train.py ...``, ``saganet-demo ...``) is parsed here by
that command's own argument parser (argparse) or composed by Hydra with its overrides, so a
flag, subcommand, positional argument or choice that the code does not accept, or a script or
module that does not exist, fails this test and names the file and the command. Nothing is
run: parsers are captured when the command first parses its arguments.

Placeholders in the docs are left alone: ``[...]`` marks optional parts (``list [--verify]``),
values such as ``DIR``, ``<state.pth>``, ``$(nproc)`` or ``...`` are not checked against a
type, and a command named without any argument in running text (a mention, not an example)
is not parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import re
import runpy
import shlex
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The table of the reference's commands: its first column holds the reference's command
# lines, which are checked only where the table says they run unchanged here.
REFERENCE_TABLE = REPO / "docs" / "original_commands.md"
# Commands that are not this repository's (tools, package managers).
FOREIGN_MODULES = {"pytest", "pip", "venv", "torch.distributed.run"}
# A value that stands for something (DIR, F, <file>, $(nproc), ...): not type-checked.
PLACEHOLDER = re.compile(r"^([A-Z][A-Z0-9_]*|.*[<>$…].*|.*\.\.\..*)$")
# Hydra scripts: config folder, primary config, schema registration, typed conversion and
# what it takes besides the config (Hydra's run directory is only known to a real run).
HYDRA_SCRIPTS = {
    "train.py": ("config", "train", "saganet.training.config:register_train_schema",
                 "saganet.training.config:from_hydra", {"run_dir": "output/run"}),
    "batch_eval.py": ("config/eval", "batch_eval",
                      "saganet.evaluation.batch_config:register_batch_eval_schema",
                      "saganet.evaluation.batch_config:batch_eval_config", {}),
}


@dataclass(frozen=True)
class Command:
    """One command line of the docs.

    Args:
        doc: the Markdown file.
        line: its line number there.
        text: the command as written.
        inline: it comes from an inline code span (running text or a table).
    """

    doc: Path
    line: int
    text: str
    inline: bool

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: {self.text}"


def _table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _inline_spans(text: str) -> list[str]:
    return [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", text)]


def doc_commands(doc: Path) -> Iterator[Command]:
    """The shell command lines of one Markdown file: lines of fenced shell blocks (with their
    backslash continuations) and inline code spans of running text and tables."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    fence: str | None = None
    pending = ""
    start = 0
    paragraph: list[tuple[int, str]] = []

    def flush_paragraph() -> Iterator[Command]:
        if paragraph:
            text = "\n".join(line for _, line in paragraph)
            for span in _inline_spans(text):
                yield Command(doc, paragraph[0][0], span, inline=True)
            paragraph.clear()

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if fence is None:
                yield from flush_paragraph()
                fence = stripped[3:].strip().lower()
            else:
                fence = None
            continue
        if fence is not None:
            if fence not in ("", "bash", "sh", "shell", "console"):
                continue
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            if pending + stripped:
                yield Command(doc, start, pending + stripped, inline=False)
            pending = ""
            continue
        if stripped.startswith("|"):
            yield from flush_paragraph()
            cells = _table_cells(stripped)
            if doc == REFERENCE_TABLE and not cells[-1].lower().startswith("yes"):
                cells = cells[1:]
            for cell in cells:
                for span in _inline_spans(cell):
                    yield Command(doc, number, span, inline=True)
            continue
        if not stripped:
            yield from flush_paragraph()
        else:
            paragraph.append((number, line))
    yield from flush_paragraph()


def _tokens(text: str) -> list[list[str]]:
    """The simple commands of a shell line (split at ``&&``, ``;``, ``|``), as words."""
    text = re.sub(r"\$\([^)]*\)", "$SUBST", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: prose, not a command
        return []
    commands, current = [], []
    for word in words:
        if word and set(word) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def _console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml (read by hand: tomllib needs Python 3.11)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', section, flags=re.MULTILINE))


@dataclass(frozen=True)
class Target:
    """What a command line runs: a repository script, a module or an entry function."""

    kind: str  # "script", "module" or "entry"
    name: str
    args: tuple[str, ...]


def target_of(words: list[str]) -> Target | None:
    """The repository command a simple command runs, or None for anything else."""
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # environment assignments (OMP_NUM_THREADS=4 ...)
    if not words:
        return None
    program, rest = words[0], words[1:]
    if program == "torchrun":
        scripts = [k for k, w in enumerate(rest) if w.endswith(".py")]
        if not scripts:
            return None
        return Target("script", rest[scripts[0]], tuple(rest[scripts[0] + 1:]))
    if program in _console_scripts():
        return Target("entry", _console_scripts()[program], tuple(rest))
    if program not in ("python", "python3") or not rest:
        return None
    if rest[0] == "-m":
        if len(rest) < 2 or rest[1].split(".")[0] in FOREIGN_MODULES or rest[1] in FOREIGN_MODULES:
            return None
        return Target("module", rest[1], tuple(rest[2:]))
    if rest[0].startswith("-"):
        return None
    return Target("script", rest[0], tuple(rest[1:]))


class _CapturedError(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


@contextlib.contextmanager
def _capturing_parsers() -> Iterator[None]:
    """While active, the first ``parse_args``/``parse_known_args`` raises with its parser."""
    original = argparse.ArgumentParser.parse_known_args

    def capture(self, *args, **kwargs):
        raise _CapturedError(self)

    argparse.ArgumentParser.parse_known_args = capture  # parse_args calls it too
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original


def capture_parser(target: Target) -> argparse.ArgumentParser:
    """The argument parser of a script, module or entry function, taken when it parses."""
    argv, path = sys.argv, list(sys.path)
    sys.argv = [target.name]
    if target.kind == "script":
        sys.path.insert(0, str((REPO / target.name).parent))  # as `python script.py` does
    try:
        with _capturing_parsers():
            if target.kind == "script":
                runpy.run_path(str(REPO / target.name), run_name="__main__")
            elif target.kind == "module":
                with warnings.catch_warnings():
                    # runpy warns when the module was imported before (by another test).
                    warnings.simplefilter("ignore", RuntimeWarning)
                    runpy.run_module(target.name, run_name="__main__", alter_sys=True)
            else:
                module, _, function = target.name.partition(":")
                getattr(importlib.import_module(module), function)()
    except _CapturedError as captured:
        return captured.parser
    finally:
        sys.argv, sys.path[:] = argv, path
    raise AssertionError(f"{target.name} never parsed its arguments")


class _ParseError(Exception):
    pass


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def parse_error(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """Why ``parser`` refuses ``args`` (None when it accepts them); a refused value that is a
    placeholder (``DIR``, ``<file>``, ``$(nproc)``) is accepted."""

    def error(message: str) -> None:
        raise _ParseError(message)

    for each in _all_parsers(parser):
        each.error = error  # instance attribute: only these parser objects
    try:
        with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):
            parser.parse_args(args)
    except SystemExit:  # --help
        return None
    except _ParseError as err:
        message = str(err)
        value = re.search(r"invalid \w+ value: '([^']*)'", message)
        if value and PLACEHOLDER.match(value.group(1)):
            return None
        return message
    return None


def documented_args(words: tuple[str, ...]) -> list[str]:
    """The arguments as a user would type them: without the ``[`` ``]`` of optional parts
    (``list [--verify]``, ``[--device cuda]``) and without ``...`` (more of the same)."""
    args = []
    for word in words:
        if word.startswith("["):
            word = word[1:]
        if word.endswith("]") and "[" not in word:
            word = word[:-1]
        if word and word not in ("...", "…"):
            args.append(word)
    return args


def _import(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def hydra_error(script: str, args: list[str]) -> str | None:
    """Why Hydra (or the schema behind it) refuses the ``key=value`` overrides of ``args``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from saganet.hydra_config import rename_overrides

    folder, name, register, convert, extra = HYDRA_SCRIPTS[script]
    # Hydra's own flags (--cfg job, --help) and placeholders are not overrides to check.
    overrides = [a for a in args if "=" in a and not a.startswith("-")
                 and not a.startswith("hydra.") and not PLACEHOLDER.match(a.partition("=")[2])]
    if script == "batch_eval.py":
        spec = importlib.util.spec_from_file_location("_batch_eval_doc", REPO / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        overrides = rename_overrides(overrides, module.REFERENCE_NAMES)
    _import(register)()
    try:
        with initialize_config_dir(config_dir=str(REPO / folder), version_base="1.3"):
            cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            _import(convert)(cfg, **extra)
    except Exception as err:  # any refusal is the finding
        return f"{type(err).__name__}: {err}"
    return None


def _documented_commands() -> list[tuple[Command, Target]]:
    found = []
    for doc in DOCS:
        for command in doc_commands(doc):
            for words in _tokens(command.text):
                target = target_of(words)
                if target is not None:
                    found.append((command, target))
    return found


COMMANDS = _documented_commands()


def test_the_docs_show_commands_of_every_entry_point():
    # The extraction itself must keep finding the documented commands.
    names = {t.name for _, t in COMMANDS}
    for expected in ("demo.py", "app.py", "train.py", "batch_eval.py", "saganet.batch",
                     "saganet.segment", "saganet.weights", "saganet.evaluation",
                     "training/load_sms.py"):
        assert expected in names, f"no documented command runs {expected}"


def command_error(target: Target, mention: bool = False) -> str | None:
    """Why the command a target runs refuses the target's arguments (None: accepted).

    Args:
        target: the command and its arguments as documented.
        mention: the command is named in running text; without arguments it is not parsed.
    """
    args = documented_args(target.args)
    if target.kind == "script":
        path = REPO / target.name
        if not path.is_file():
            return f"no script {target.name} in the repository"
        if path.name in HYDRA_SCRIPTS and "hydra.main" in path.read_text(encoding="utf-8"):
            return hydra_error(path.name, args)
    elif target.kind == "module" and importlib.util.find_spec(target.name) is None:
        return f"no module {target.name}"
    if mention and not args:
        return None
    return parse_error(capture_parser(target), args)


@pytest.mark.parametrize(("command", "target"), COMMANDS, ids=[str(c) for c, _ in COMMANDS])
def test_documented_command_parses(command: Command, target: Target):
    error = command_error(target, mention=command.inline)
    assert error is None, f"{command}: {error}"


def _entry_points() -> list[Target]:
    """Every command of the repository that takes arguments: the console scripts (which
    include demo.py, app.py, the batch, weights and evaluation commands), the other modules
    run with -m, and the data preparation scripts."""
    targets = [Target("entry", name, ()) for name in sorted(set(_console_scripts().values()))]
    targets += [Target("module", name, ()) for name in ("saganet.segment",
                                                        "saganet.training.ema")]
    targets += [Target("script", str(path.relative_to(REPO)), ())
                for path in sorted((REPO / "training").glob("*.py"))]
    return targets


def help_commands(parser: argparse.ArgumentParser) -> list[str]:
    """Command lines quoted in a parser's help (and its subcommands'): backticked spans and
    example lines of the description or epilog, with their backslash continuations."""
    found = []
    for each in _all_parsers(parser):
        text = each.format_help()
        found += [" ".join(span.split()) for span in re.findall(r"`+([^`]+)`+", text)]
        lines = re.sub(r"\\\n\s*", " ", text).splitlines()
        found += [line.strip() for line in lines
                  if line.strip().startswith(("python ", "torchrun "))]
    return found


@pytest.mark.parametrize("entry", _entry_points(), ids=lambda t: t.name)
def test_commands_in_help_texts_parse(entry: Target):
    # Help texts point at other commands too (`python -m saganet.debug_weights` ...).
    errors = []
    for text in help_commands(capture_parser(entry)):
        for words in _tokens(text):
            target = target_of(words)
            if target is not None:
                error = command_error(target, mention=True)
                if error is not None:
                    errors.append(f"{text}: {error}")
    assert not errors, f"{entry.name} --help: " + "; ".join(errors)


def test_a_wrong_command_is_caught(tmp_path):
    # The README once showed `python -m saganet.batch jobs.csv` (the file is --csv's value).
    doc = tmp_path / "doc.md"
    doc.write_text("Run `python -m saganet.batch jobs.csv --variant debug`, or\n\n```bash\n"
                   "python demo.py --video v.mp4 \\\n    --no_such_flag 3\n"
                   "python demo.py --join overlap\n"
                   "torchrun --nproc_per_node=2 train.py no_such_key=1\n```\n")
    found = [(c, t) for c in doc_commands(doc) for w in _tokens(c.text)
             if (t := target_of(w)) is not None]
    assert [c.line for c, _ in found] == [1, 4, 6, 7]
    errors = [parse_error(capture_parser(t), list(t.args)) for _, t in found[:3]]
    assert all(errors), errors
    assert "--csv" in errors[0]
    assert "--no_such_flag" in errors[1]
    assert "invalid choice" in errors[2]
    assert hydra_error("train.py", list(found[3][1].args)) is not None
