"""Helpers shared by test files (imported as ``tests.helpers``; test files never import each other)."""

from click.testing import CliRunner


def invoke(cmd, args, **kwargs):
    result = CliRunner().invoke(cmd, [str(a) for a in args], **kwargs)
    assert "Traceback" not in result.output, result.output
    return result


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error"), result.output
    for fragment in fragments:
        assert fragment in last, last
