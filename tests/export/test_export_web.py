"""`vae-export --web DIR`: refused before any work when the page's files are missing (the folder it
writes: tests/runtime/test_serve.py, through the same write_site)."""

from __future__ import annotations

from click.testing import CliRunner

from vae_edge.export.cli import cli


def test_web_is_checked_before_the_export(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EDGE_JS", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(cli, [str(model_path), "--out", str(tmp_path / "bundle"), "--web", str(tmp_path / "site")])
    assert result.exit_code == 2 and "--web" in result.output and "not a runtime-js folder" in result.output
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "site").exists()



def test_web_for_a_text_model_is_refused_before_the_export(text_model_path, tmp_path):
    result = CliRunner().invoke(cli, [str(text_model_path), "--out", str(tmp_path / "bundle"), "--web", str(tmp_path / "site")])
    assert result.exit_code == 2 and "--web" in result.output and "trained on text data" in result.output, result.output
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "site").exists()
