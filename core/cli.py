"""The command-line convention of every ``python -m`` entry point.

- Bad input raises ``UserError`` (or a subclass): the user sees one ``error: ...`` line and the exit code is 2.
- Any other exception is a bug or an outage: one short ``error: ...`` line naming its type, the traceback in a log
  file whose path that line gives, exit code 1.
- Commands with subcommands (``python -m inference.deploy deploy ...``) declare them as a ``Subcommands`` table of
  ``@dataclass`` option groups, parsed with argparse subparsers whose parsers are ``HfArgumentParser``s.

    @entry_point
    def main(argv: list[str] | None = None) -> int:
        (args,) = parse(HfArgumentParser(MyArguments), argv)
        ...

    if __name__ == "__main__":
        sys.exit(main())
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

USER_ERROR_EXIT = 2
FAILURE_EXIT = 1


class UserError(Exception):
    """A problem with the arguments, the input or the environment that the user can fix: one line, exit code 2."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (SDK and botocore messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def run_cli(main: Callable[..., int | None], argv: Sequence[str] | None = None,
            user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Call ``main(argv)`` and turn how it ends into an exit code, printing at most one ``error:`` line.

    ``user_errors`` are further exception types that mean bad input here (a library's own "not found", say).
    argparse's own exits (``--help``, a malformed option) keep their code.
    """
    try:
        code = main(None if argv is None else list(argv))
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return FAILURE_EXIT
    except (UserError, *user_errors) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that reports unexpected failures
        print(f"error: unexpected {type(error).__name__}: {one_line(error)[:300]} (traceback in {_save_traceback()})",
              file=sys.stderr)
        return FAILURE_EXIT
    return 0 if code is None else int(code)


def _save_traceback() -> str:
    """Write the current exception's traceback to a log file (and the debug log); return the file's path."""
    text = traceback.format_exc()
    log.debug("%s", text)
    with tempfile.NamedTemporaryFile("w", prefix="bincount-error-", suffix=".log", delete=False) as file:
        file.write(text)
    return file.name


def entry_point(main: Callable[..., int | None] | None = None, *,
                user_errors: tuple[type[BaseException], ...] = ()) -> Any:
    """Decorator form of ``run_cli``: the decorated ``main(argv=None)`` returns an exit code instead of raising."""
    def wrap(func: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(func)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            return run_cli(func, argv, user_errors)
        return wrapper
    return wrap(main) if main is not None else wrap


def parse(parser, argv: Sequence[str] | None = None) -> tuple:
    """``parser.parse_args_into_dataclasses(argv)`` (an ``HfArgumentParser``), with its complaints as ``UserError``:
    it raises a plain ValueError for an unknown option, and the dataclasses' own checks (``__post_init__``, such as
    TrainingArguments') raise ValueError for values that do not go together, both of which would read as a bug."""
    try:
        *groups, rest = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    except ValueError as error:
        raise UserError(f"invalid options: {one_line(error)}") from None
    if rest:
        raise UserError(f"unknown option {rest[0]!r} (see --help)")
    return tuple(groups)


def option_names(*dataclass_types: type) -> set[str]:
    """The option names (``--name``) an ``HfArgumentParser`` of these dataclasses accepts, read from the dataclasses."""
    return {field.name for dtype in dataclass_types for field in dataclasses.fields(dtype) if field.init}


def into_dataclasses(namespace: argparse.Namespace, dataclass_types: Sequence[type]) -> tuple:
    """Split a parsed namespace into one instance per dataclass, as ``parse_args_into_dataclasses`` does."""
    values = vars(namespace)
    groups = []
    for dtype in dataclass_types:
        names = option_names(dtype)
        groups.append(dtype(**{name: value for name, value in values.items() if name in names}))
    return tuple(groups)


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One subcommand: its option groups (dataclasses) and a one-line help."""

    groups: tuple[type, ...]
    help: str = ""


class Subcommands:
    """``prog COMMAND [options] [-- passthrough ...]`` on argparse subparsers, one ``HfArgumentParser`` per command.

    ``parse`` returns (command, option groups, passthrough): the words after a lone ``--`` are handed over unparsed
    (to the program a job runs, say) for the commands listed in ``passthrough``.
    """

    def __init__(self, prog: str, commands: dict[str, Subcommand], description: str = "",
                 passthrough: Sequence[str] = ()) -> None:
        from transformers import HfArgumentParser  # slow to import; only parsing needs it

        self.commands = commands
        self.passthrough = set(passthrough)
        self.parser = argparse.ArgumentParser(prog=prog, description=description,
                                              formatter_class=argparse.RawDescriptionHelpFormatter)
        subparsers = self.parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                                parser_class=HfArgumentParser)
        for name, command in commands.items():
            subparsers.add_parser(name, dataclass_types=command.groups, help=command.help,
                                  description=command.help)

    def parse(self, argv: Sequence[str] | None = None) -> tuple[str, tuple, list[str]]:
        """Parse ``argv``. A missing or unknown command ends with argparse's usage and exit code 2; an unknown option
        of a known command is a ``UserError`` naming it."""
        argv = list(sys.argv[1:] if argv is None else argv)
        split = argv.index("--") if "--" in argv else len(argv)
        argv, rest = argv[:split], argv[split + 1:]
        namespace, unknown = self.parser.parse_known_args(argv)
        command = namespace.command
        if unknown:
            hint = " (options of the job's program go after --)" if command in self.passthrough else ""
            raise UserError(f"unknown {command} option {unknown[0]}{hint}")
        if rest and command not in self.passthrough:
            raise UserError(f"{command} takes no options after --")
        return command, into_dataclasses(namespace, self.commands[command].groups), rest
