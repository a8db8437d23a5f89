"""A 28x28 MNIST-format IDX file made from scikit-learn's bundled 8x8 digits, upscaled with Pillow.

No PyPI package we could find ships the MNIST IDX files in its wheel (the MNIST loaders on PyPI
download them at run time, which this project may not do), so the 28x28 IDX check of vae-train uses
this stand-in: 1,797 digits, grey levels 0..16 scaled to 0..255, bicubic-resized to 28x28 (uint8).

    python bench/make_digits28_idx.py build/digits28-images-idx3-ubyte.gz
    vae-train --data idx:build/digits28-images-idx3-ubyte.gz --arch conv --out build/conv28/model.pt
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from vae_edge.runtime.clitools import output_path, run_cli
from vae_edge.trainer.readers import write_idx


def digits28() -> np.ndarray:
    """[1797, 28, 28] uint8."""
    images = load_digits().images  # (1797, 8, 8), 0..16
    out = np.empty((len(images), 28, 28), np.uint8)
    for i, im in enumerate(images):
        small = Image.fromarray((im * (255 / 16)).round().astype(np.uint8))
        out[i] = np.asarray(small.resize((28, 28), Image.Resampling.BICUBIC))
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path), default=Path("build/digits28-images-idx3-ubyte.gz"), callback=output_path())
def cli(dest: Path) -> None:
    """Write the 28x28 digits as an IDX file at DEST (.gz compresses it)."""
    click.echo(write_idx(dest, digits28()))


def main() -> None:
    """Entry point: one `Error:` line and exit 2 for a bad DEST (``--help`` used to become a file name)."""
    run_cli(cli, prog_name="make_digits28_idx.py")


if __name__ == "__main__":
    main()
