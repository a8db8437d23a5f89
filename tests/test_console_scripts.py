"""The installed console scripts end to end, as a user types them: train -> export -> run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_console_scripts_end_to_end(tmp_path):
    """The installed commands, as a user types them: train -> export -> run."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(*args):
        return subprocess.run([str(bindir / args[0]), *map(str, args[1:])], capture_output=True, text=True, cwd=tmp_path, env=env)

    train = run("vae-train", "--epochs", 3, "--hidden", 32, "--latent", 3, "--iw-samples", 10, "--quiet")
    assert train.returncode == 0, train.stderr
    export = run("vae-export", "model.pt", "--out", "bundle", "--no-latency")  # timing is tested in tests/export
    assert export.returncode == 0, export.stderr
    assert "✓ fp32" in export.stdout and "Traceback" not in export.stderr
    sample = run("vae-run", "sample", "bundle", "-n", 9, "--grid", "s.png", "--out", "s.npy")
    assert sample.returncode == 0, sample.stderr
    assert np.load(tmp_path / "s.npy").shape == (9, 1, 8, 8)
    bad = run("vae-export", "nothing.pt")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == ["Error: Invalid value for 'MODEL': File 'nothing.pt' does not exist. (see 'vae-export --help')"]
