"""vae-export --out replaces a folder only when it is one of our bundles (schema checked, nothing else in it)."""

import json
import os
import shutil

import pytest

from vae_edge.export.destination import DestinationError, check_destination
from vae_edge.runtime.bundle import default_bundle_path


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "models" / "model.pt"
    path.parent.mkdir()
    path.write_bytes(b"unused here")
    return path


def test_a_web_app_holding_a_manifest_json_is_never_replaced(tmp_path, model):
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "index.html").write_text("<html></html>")
    (webapp / "manifest.json").write_text(json.dumps({"name": "my pwa", "icons": []}))
    with pytest.raises(DestinationError, match="not a vae-edge bundle"):
        check_destination(webapp, model)
    assert (webapp / "index.html").exists()


def test_a_bundle_with_a_foreign_file_added_is_not_replaced(tmp_path, model):
    out = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), out)
    check_destination(out, model)  # one of ours: may be replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DestinationError, match=r"does not list \(notes.txt\)"):
        check_destination(out, model)


def test_a_manifest_with_our_schema_but_broken_is_not_ours(tmp_path, model):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"schema": "vae-edge/bundle/1"}))
    (out / "app.js").write_text("")
    with pytest.raises(DestinationError, match="not a vae-edge bundle"):
        check_destination(out, model)


@pytest.mark.parametrize("earlier", ["empty folder", "bundle"])
def test_an_existing_folder_whose_parent_is_read_only_is_refused_before_any_work(tmp_path, model, earlier):
    parent = tmp_path / "locked"
    out = parent / "bundle"
    if earlier == "bundle":
        shutil.copytree(default_bundle_path(), out)
    else:
        out.mkdir(parents=True)
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        with pytest.raises(DestinationError, match="cannot write there"):
            check_destination(out, model)  # the staging folder and the swap both need the parent
    finally:
        parent.chmod(0o755)
