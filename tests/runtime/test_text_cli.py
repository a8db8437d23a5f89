"""vae-run on a text bundle: lines in, lines out; bad input is one Error line and exit 2, or a per-line
report in a stream."""

import pytest
from click.testing import CliRunner

from vae_edge.runtime.cli import cli as run_main


def invoke(args, **kwargs):
    result = CliRunner().invoke(run_main, [str(a) for a in args], **kwargs)
    assert "Traceback" not in result.output, result.output
    return result


def test_sample_prints_lines(text_bundle):
    first = invoke(["sample", text_bundle, "-n", "6", "--seed", "2"])
    assert first.exit_code == 0, first.output
    assert len(first.stdout.splitlines()) == 6
    assert first.stdout == invoke(["sample", text_bundle, "-n", "6", "--seed", "2"]).stdout
    assert invoke(["sample", text_bundle, "-n", "3", "--greedy", "--top-k", "3"]).exit_code == 0


def test_reconstruct_encode_score_one_output_per_line(tmp_path, text_bundle):
    src = tmp_path / "in.txt"
    src.write_text("bako\n\nrimesa\ntutu\n", encoding="utf-8")
    for command, extra in (("reconstruct", []), ("encode", []), ("score", []), ("score", ["--per-char"])):
        result = invoke([command, text_bundle, src, *extra])
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == 3, (command, result.stdout)


def test_interpolate_between_two_lines(text_bundle):
    result = invoke(["interpolate", text_bundle, "bako", "nimesalo", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4


def test_score_stream_one_score_per_incoming_line(text_bundle):
    result = invoke(["score", text_bundle, "--stream", "--batch-size", "1"], input=b"bako\n\xff\n\nrime\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:3] == ["nan", "nan"]
    assert "line 2: not valid UTF-8" in result.stderr and "line 3: empty" in result.stderr


@pytest.mark.parametrize("content, fragment", [
    (b"\x00\x01\x02binary", "binary"),
    (b"", "is empty"),
    (b"bako\n" + b"x" * 100 + b"\n", "more than the limit"),
    (b"bako\ncaf\xe9\n", "not valid UTF-8"),
])
def test_bad_input_is_one_error_line(tmp_path, text_bundle, content, fragment):
    src = tmp_path / "bad.txt"
    src.write_bytes(content)
    for command in ("score", "reconstruct", "encode"):
        result = invoke([command, text_bundle, src])
        assert result.exit_code == 2, result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("Error") and fragment in last, last


def test_empty_line_to_interpolate_and_image_options_refused(text_bundle):
    assert invoke(["interpolate", text_bundle, "", "bako"]).exit_code == 2
    result = invoke(["sample", text_bundle, "--grid", "x.png"])
    assert result.exit_code == 2 and "does not apply to a text bundle" in result.output
