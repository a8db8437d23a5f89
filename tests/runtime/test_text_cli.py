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


def test_score_stream_one_score_per_incoming_line(tmp_path, text_bundle):
    result = invoke(["score", text_bundle, "--stream", "--batch-size", "1"], input=b"bako\n\xff\n\nrime\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:3] == ["nan", "nan"]
    assert "line 2: not valid UTF-8" in result.stderr and "line 3: empty" in result.stderr
    # a byte-order mark starting a file (as Windows editors write UTF-8) is not part of its first line
    marked = tmp_path / "marked.txt"
    marked.write_bytes(b"\xef\xbb\xbfbako\nrime\n")
    first = result.stdout.splitlines()[0]
    assert invoke(["score", text_bundle, "--stream"], input=marked.read_bytes()).stdout.splitlines()[0] == first
    assert invoke(["score", text_bundle, marked]).stdout.splitlines()[0] == first
    # a line with no end in sight is read only up to a bound and reported as too long, not kept whole
    # (/dev/zero would fill memory); a character cut at the bound is not taken for invalid UTF-8
    result = invoke(["score", text_bundle, "--stream", "--batch-size", "1"], input=b"bako\n" + "\u00e9".encode() * 50_000 + b"\nrime\n")
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == "nan" and len(result.stdout.splitlines()) == 3, result.output
    assert "line 2: " in result.stderr and "more than this model's limit" in result.stderr, result.stderr
    assert "the first part of a longer line" in result.stderr  # its count of characters is the part read, not the line's


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
    result = invoke(["evaluate", text_bundle, "a.txt", "b.txt"])  # said "open it with vae_edge.runtime.load (a TextVAE)"
    assert result.exit_code == 2 and "evaluate takes .npy/.npz/.csv samples of image and vector bundles" in result.output


def test_decode_refuses_a_file_of_no_codes_and_codes_beyond_the_bound(tmp_path, text_bundle):
    # an empty file printed an empty line and exit 0; 1e30 decoded to a line of 'eeee...'; both as for image bundles now
    import numpy as np

    latent = _latent(text_bundle)
    for name, z, fragment in (("none.npy", np.zeros((0, latent), np.float32), "holds no samples"),
                              ("far.npy", np.full((1, latent), 1e30, np.float32), "values must lie within")):
        np.save(tmp_path / name, z)
        result = invoke(["decode", text_bundle, tmp_path / name])
        assert result.exit_code == 2 and fragment in result.output, result.output


def _latent(bundle) -> int:
    import json

    return json.loads((bundle / "manifest.json").read_text())["model"]["config"]["latent_dim"]


def test_an_empty_stream_is_an_error_and_blank_stream_lines_are_reported(tmp_path, text_bundle):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    for args, kwargs in (([empty], {}), ([], {"input": b""})):
        result = invoke(["score", text_bundle, *args, "--stream"], **kwargs)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines()[-1].startswith("Error") and "is empty" in result.output
    result = invoke(["score", text_bundle, "--stream", "--batch-size", "2"], input=b"bako\n   \nrime\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == "nan" and "line 2: blank (whitespace only)" in result.stderr
    for missing, fragment in ((tmp_path / "nowhere.log", "no such file"), (tmp_path, "is a folder")):  # reading, not writing
        result = invoke(["score", text_bundle, missing, "--stream"])
        assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("Error") and fragment in result.output, result.output


@pytest.mark.parametrize("content, fragment", [
    (b"\x00\x01\x02binary\n", "binary"),
    (b"", "is empty"),
    (b"\n  \n", "no text in it"),
    (b"bako\n" + b"x" * 100 + b"\n", "more than the limit"),
    (b"bako\ncaf\xe9\n", "not valid UTF-8"),
])
def test_the_installed_command_gives_one_error_line_and_exit_2(tmp_path, text_bundle, content, fragment):
    """End to end, as a user runs it: the console script in its own process, no traceback, one line."""
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "bad.txt"
    src.write_bytes(content)
    vae_run = Path(sys.executable).with_name("vae-run")
    done = subprocess.run([str(vae_run), "score", str(text_bundle), str(src)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ") and fragment in done.stderr, done.stderr


def test_an_empty_string_to_score_or_interpolate_is_refused(text_bundle):
    from vae_edge.runtime import TextVAE
    from vae_edge.runtime.vocab import TextError

    vae = TextVAE.load(text_bundle, threads=1)
    with pytest.raises(TextError, match="empty string"):
        vae.anomaly_score(["bako", ""])
    result = invoke(["interpolate", text_bundle, "bako", ""])
    assert result.exit_code == 2 and "the second text: empty string" in result.output
    # what a line of a file cannot hold, a line given on the command line cannot either: undecodable
    # bytes (Python's surrogate escapes in sys.argv), binary control characters, a line feed
    for line, fragment in (("caf\udce9", "not valid UTF-8 (byte 0xe9)"), ("a\x01b", "binary data"), ("a\nb", "line feed")):
        result = invoke(["interpolate", text_bundle, "bako", line])
        last = result.output.strip().splitlines()[-1]
        assert result.exit_code == 2 and last.startswith("Error") and fragment in last, result.output
        with pytest.raises(TextError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            vae.anomaly_score([line])


def test_the_commands_load_no_torch(tmp_path, text_bundle):
    """vae-run on a text bundle, good and bad input, and the API's load(), in a process of its own: torch,
    onnx and PIL never imported."""
    import subprocess
    import sys

    log = tmp_path / "app.log"
    log.write_bytes(b"bako\n\xff\n" + b"x" * 100 + b"\n")
    code = ("import sys; from vae_edge.runtime.cli import cli\n"
            "b, log = sys.argv[1:]\n"
            "for args in (['sample', b, '-n', '3'], ['score', b, log, '--stream'], ['interpolate', b, 'bako', 'caf\\udce9']):\n"
            "    try: cli.main(args, standalone_mode=False)\n"
            "    except Exception as exc: print('refused', type(exc).__name__)\n"
            "from vae_edge.runtime import load; load(b).anomaly_score(['bako'])\n"
            "assert not {'torch', 'onnx', 'PIL'} & set(sys.modules), sorted(sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, str(text_bundle), str(log)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3 + 3 + 1 and "refused" in done.stdout.splitlines()[-1], done.stdout
