"""A 28x28 MNIST-format IDX file made from scikit-learn's bundled 8x8 digits, upscaled with Pillow.

No PyPI package we could find ships the MNIST IDX files in its wheel (the MNIST loaders on PyPI
download them at run time, which this project may not do), so the 28x28 IDX check of vae-train uses
this stand-in: 1,797 digits, grey levels 0..16 scaled to 0..255, bicubic-resized to 28x28 (uint8).

    python bench/make_digits28_idx.py build/digits28-images-idx3-ubyte.gz
    vae-train --data idx:build/digits28-images-idx3-ubyte.gz --arch conv --out build/conv28/model.pt
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from vae_edge.trainer.readers import write_idx


def digits28() -> np.ndarray:
    """[1797, 28, 28] uint8."""
    images = load_digits().images  # (1797, 8, 8), 0..16
    out = np.empty((len(images), 28, 28), np.uint8)
    for i, im in enumerate(images):
        small = Image.fromarray((im * (255 / 16)).round().astype(np.uint8))
        out[i] = np.asarray(small.resize((28, 28), Image.Resampling.BICUBIC))
    return out


def main() -> None:
    dest = sys.argv[1] if len(sys.argv) > 1 else "build/digits28-images-idx3-ubyte.gz"
    print(write_idx(dest, digits28()))


if __name__ == "__main__":
    main()
