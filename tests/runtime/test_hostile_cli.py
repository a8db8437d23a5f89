"""vae-run against hostile input and full disks: one Error line, the right exit code, the path named."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import invoke, one_line_error

from vae_edge.runtime.cli import cli

RUN = [sys.executable, "-c", "from vae_edge.runtime.cli import main; main()"]


def test_a_stdin_line_without_a_newline_is_bounded():
    result = invoke(cli, ["score", "--stream", "-"], input="1," * 200_000)
    one_line_error(result, 2, "line 1", "line longer than")


def test_stdin_rows_of_the_right_length_still_stream():
    result = invoke(cli, ["score", "--stream", "-"], input=(",".join(["3"] * 64) + "\n") * 3)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_device_is_named_with_no_space_left():
    done = subprocess.run([*RUN, "sample", "-n", "2", "--out", "/dev/full"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "Error: cannot write /dev/full: No space left on device", done.stderr
    with open("/dev/full", "w") as full:
        done = subprocess.run([*RUN, "sample", "-n", "2"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1 and "standard output: No space left on device" in done.stderr, done.stderr
