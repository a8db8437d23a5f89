"""What the three command-line tools share: one-line errors with click's exit codes, and output paths
that are checked before any work starts. Kept in the runtime so that a device has it without torch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .files import check_writable
from .validation import one_line


def run_cli(command: click.Command, **kwargs) -> None:
    """Run ``command`` as a console script: every failure ends in one ``Error: ...`` line on stderr.

    Exit codes follow click: 0 ok, 1 the job failed, 2 bad usage or bad input. Never a traceback for
    a user's mistake; a closed pipe (``vae-run sample | head``) ends quietly.
    """
    try:
        rv = command.main(standalone_mode=False, **kwargs)
        sys.stdout.flush()
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # the "message" is the help text itself
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        _fail("aborted", 1)
    except BrokenPipeError:
        # The reader went away: stop quietly, as the Python docs advise for pipelines.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except MemoryError:
        _fail("not enough memory for this request; ask for fewer samples or a smaller batch", 1)
    except OSError as exc:  # e.g. stdout on a full disk
        _fail(f"cannot write {exc.filename or 'to standard output'}: {exc.strerror or exc}", 1)
    sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    # One line whatever the message holds (a path or value with a line break in it): scripts read one line.
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(code)


def output_path(suffix: str | None = None):
    """A click callback: the path must be writable now (missing folders are made at write time), so that a job does not
    run for minutes and then fail to save; ``suffix`` (e.g. ".png") is required when given."""

    def check(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        return None if value is None else writable(value, suffix=suffix)

    return check


def writable(path: Path, *, suffix: str | None = None) -> Path:
    """``path`` if it can be written now (missing folders are made when it is written).

    Raises:
        click.BadParameter: empty, wrong suffix (a device such as /dev/null may have any), or not writable.
    """
    if not str(path).strip():
        raise click.BadParameter("expected a file path, got an empty string")
    device = path.exists() and not path.is_file()  # /dev/null, /dev/stdout, a pipe: written in place, any name
    if suffix and path.suffix.lower() != suffix and not device:
        raise click.BadParameter(f"expected a {suffix} file name, got {str(path)!r}")
    try:
        check_writable(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def require_workstation_extras(tool: str) -> None:
    """vae-train and vae-export need torch and onnx, which a device install does not have.

    Raises:
        click.ClickException: one line saying what to install.
    """
    import importlib.util

    missing = [m for m in ("torch", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(f"{tool} needs the workstation extras ({', '.join(missing)} missing): pip install \"vae-edge[train]\"")
