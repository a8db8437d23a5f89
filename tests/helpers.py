"""Helpers shared by test files (imported as ``from helpers import ...``: tests/ is on sys.path through
its conftest.py). Test files never import from each other."""

from click.testing import CliRunner


def invoke(cmd, args, **kwargs):
    """Run a click command in-process with every argument as a string; never a traceback in its output."""
    result = CliRunner().invoke(cmd, [str(a) for a in args], **kwargs)
    assert "Traceback" not in result.output, result.output
    return result


def one_line_error(result, code, *fragments):
    """The command exited with ``code`` and its last line is one ``Error`` line holding every fragment."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error"), result.output
    for fragment in fragments:
        assert fragment in last, last
