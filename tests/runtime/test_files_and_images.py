import numpy as np
import pytest

from vae_edge.runtime.files import atomic_directory, atomic_path, atomic_save_npy, check_writable, sha256_file
from vae_edge.runtime.images import grid_array, interleave_rows, save_grid, save_spectrograms


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half of the ne")
            raise RuntimeError("killed mid-write")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert oct(dest.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "a").write_text("old")
    with pytest.raises(ValueError):
        with atomic_directory(dest) as tmp:
            (tmp / "a").write_text("new")
            raise ValueError("check failed")
    assert (dest / "a").read_text() == "old"
    with atomic_directory(dest) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during an export into folders it had to make
        with atomic_directory(tmp_path / "new" / "deeper" / "bundle") as tmp:
            (tmp / "a").write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_npy_is_written_to_the_exact_name(tmp_path):
    dest = tmp_path / "scores.bin"
    atomic_save_npy(dest, np.arange(3.0))
    np.testing.assert_array_equal(np.load(dest), np.arange(3.0))
    assert len(sha256_file(dest)) == 64


def test_grid_layout_and_scaling(tmp_path):
    imgs = np.zeros((5, 1, 8, 8), np.float32)
    imgs[1] = 1.0
    grid = grid_array(imgs, nrow=3, pad=1)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1) and grid.dtype == np.uint8
    assert grid[1:9, 10:18].min() == 255 and grid[1:9, 1:9].max() == 0
    rgb = grid_array(np.ones((2, 3, 4, 4)), scale=2)
    assert rgb.shape == ((4 + 2) * 2, (2 * 5 + 1) * 2, 3)
    png = save_grid(tmp_path / "g.png", imgs)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[1] >= 48
    with pytest.raises(ValueError, match="stack of images"):
        grid_array(np.zeros((4, 64)))


def test_interleave_rows_pairs_originals_with_reconstructions_in_aligned_rows():
    a, b = np.arange(5)[:, None], -np.arange(5)[:, None]
    rows = interleave_rows(a, b, 2).reshape(-1, 2)  # 5 is not a multiple of 2: the last pair of rows is padded
    assert np.array_equal(rows, [[0, 1], [0, -1], [2, 3], [-2, -3], [4, np.nan], [-4, np.nan]], equal_nan=True)


def test_a_spectrogram_grid_of_clips_not_filling_the_last_row_keeps_its_blank_tiles_blank(tmp_path):
    # vae-run reconstruct --grid of a 5 s recording at 4 clips a row (make demo-audio) was an IndexError:
    # the NaN of interleave_rows' blank tiles was cast to an int colour index.
    from PIL import Image

    clips = np.full((5, 8, 4), np.log(1e-8) / 2)
    png = save_spectrograms(tmp_path / "rec.png", interleave_rows(clips, clips, 4), 1e-8, nrow=4)
    with Image.open(png) as im:
        grid = np.asarray(im)
    tile = grid.shape[1] // 4
    assert grid[grid.shape[0] // 2 :, tile:].max() == 0 and grid[: grid.shape[0] // 2].max() > 0  # row 2: one clip, three blanks


def test_a_labelled_grid_names_its_rows_in_a_margin_and_keeps_blank_tiles_blank(tmp_path):
    from PIL import Image

    x = np.ones((3, 1, 8, 8), np.float32)
    plain = save_grid(tmp_path / "plain.png", interleave_rows(x, x, 2), nrow=2)
    labelled = save_grid(tmp_path / "labelled.png", interleave_rows(x, x, 2), nrow=2, row_labels=("input", "reconstruction"))
    with Image.open(plain) as p, Image.open(labelled) as q:
        margin = q.width - p.width
        assert margin > 40 and q.height == p.height  # room for "reconstruction"
        grid = np.asarray(p)
        assert np.array_equal(np.asarray(q)[:, margin:], grid)
        label = np.asarray(q)[:, :margin]
        tile = grid.shape[0] // 4  # four rows of tiles: input, reconstruction, input, reconstruction
        assert all((label[r * tile : (r + 1) * tile] < 128).any() for r in range(4))  # text on every row
    assert grid[-tile // 2, -tile // 2] == 0 and grid[-tile // 2, tile // 2] == 255  # blank tile, then a white one


def test_checking_an_output_leaves_no_folders_and_the_write_makes_them(tmp_path):
    """A tool checks its outputs before work; if the job then fails on its input, no empty folders remain."""
    dest = tmp_path / "new" / "deeper" / "out.npy"
    assert check_writable(dest) == dest
    assert list(tmp_path.iterdir()) == []
    atomic_save_npy(dest, np.arange(3.0))
    np.testing.assert_array_equal(np.load(dest), np.arange(3.0))
    (tmp_path / "blocked").write_text("a file where a folder would go")
    with pytest.raises(OSError):
        check_writable(tmp_path / "blocked" / "out.npy")
