"""Where a bundle goes: the checks on --out before any work, and the atomic swap that puts it there.

The whole bundle is written into a temporary folder beside the destination and renamed into place only
after every stage has passed: a failed export leaves no half-written bundle and an earlier one untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vae_edge.runtime.bundle import BundleError, read_manifest
from vae_edge.runtime.contract import MANIFEST
from vae_edge.runtime.files import atomic_directory, check_writable


class DestinationError(ValueError):
    """--out names a folder that must not be replaced (not a bundle, or it holds the model)."""


def check_destination(out: Path, model_path: Path) -> None:
    """Refuse to replace anything but an earlier bundle: the export swaps the whole folder.

    A folder is one of our bundles when its manifest passes the runtime's schema check and every entry
    in the folder is a file that manifest lists: a web app's folder that merely holds a file called
    manifest.json is never replaced (its other files would be deleted with it).

    Raises:
        DestinationError: ``out`` is a file, a non-empty folder that is not one of our bundles, the
            folder holding the model, or the current folder (or one above it).
    """
    if not out.exists():
        try:
            check_writable(out)  # probes the parent folder and leaves nothing behind
        except OSError as exc:
            raise DestinationError(f"{out}: cannot write there ({exc.strerror or exc})") from None
        return
    if not out.is_dir():
        raise DestinationError(f"{out}: exists and is not a folder")
    real = out.resolve()
    if real == Path.cwd().resolve() or real in Path.cwd().resolve().parents:
        raise DestinationError(f"{out}: is the current folder or above it; name a bundle folder of its own")
    if real in model_path.resolve().parents:
        raise DestinationError(f"{out}: holds {model_path.name}; name a bundle folder of its own")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        _check_swappable(out)
        return
    if MANIFEST not in entries:
        raise DestinationError(f"{out}: exists and is not a bundle (no {MANIFEST}); refusing to replace it")
    try:
        manifest = read_manifest(out)
    except BundleError as exc:
        raise DestinationError(f"{out}: holds a {MANIFEST} that is not a vae-edge bundle's ({exc}); refusing to replace the folder") from None
    foreign = [name for name in entries if name != MANIFEST and (name not in manifest["files"] or not (out / name).is_file() or (out / name).is_symlink())]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise DestinationError(f"{out}: holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} its bundle manifest does not list ({shown}); refusing to replace the folder")
    _check_swappable(out)


def _check_swappable(out: Path) -> None:
    # The new bundle is staged beside the existing folder and swapped with it: its parent must take a
    # new entry, known now rather than after minutes of export (a read-only or full disk, no permission).
    real = Path(os.path.realpath(out))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{real.name}.{os.getpid()}.", suffix=".probe", dir=real.parent))
    except OSError as exc:
        raise DestinationError(f"{out}: cannot write there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write the bundle into; on a clean exit it replaces ``out``
    (an earlier bundle there is swapped out whole), on an exception it is removed and ``out`` untouched."""
    with atomic_directory(out) as tmp:
        yield tmp
