"""`vae-run serve` and `vae-export --web`: the explorer's files, served from this checkout and nothing else."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from vae_edge.runtime.cli import cli
from vae_edge.runtime.serve import AssetsError, BundleError, make_server, runtime_js, write_site


@pytest.fixture
def assets():
    try:
        return runtime_js()
    except AssetsError as exc:
        pytest.skip(f"explorer tests skipped: {exc}")


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], b""


def test_serve_gives_the_page_runtime_wasm_and_bundle_only(assets, bundle):
    server = make_server(bundle, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, kind, body = _get(base + "/")
        assert status == 200 and kind.startswith("text/html") and b'"onnxruntime-web": "./ort/ort.wasm.min.mjs"' in body
        assert b"https://" not in body and b"http://" not in body  # nothing from elsewhere
        assert _get(base + "/ort/ort-wasm-simd-threaded.wasm")[1] == "application/wasm"
        assert _get(base + "/runtime/browser.js")[1].startswith("text/javascript")
        assert _get(base + "/bundle/golden.json")[0] == 200
        for path in ("/bundle/../pyproject.toml", "/runtime/../package.json", "/bundle/model.pt", "/ort/ort.all.min.mjs", "/%2e%2e/Makefile"):
            assert _get(base + path)[0] == 404, path
    finally:
        server.shutdown()
        server.server_close()


def test_web_folder_holds_everything_the_page_loads(assets, bundle, tmp_path):
    site = write_site(bundle, tmp_path / "site")
    for name in ("index.html", "web/explorer.js", "runtime/core.js", "ort/ort-wasm-simd-threaded.wasm", "bundle/manifest.json", "bundle/golden.json", "bundle/encoder.int8.onnx"):
        assert (site / name).is_file(), name
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an explorer folder"):
        write_site(bundle, tmp_path / "other")


def test_serve_without_runtime_js_says_what_to_run(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EDGE_JS", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", str(bundle), "--port", "0"])
    assert result.exit_code == 2 and "not a runtime-js folder" in result.output and "VAE_EDGE_JS" in result.output


def test_serve_and_web_refuse_a_bundle_the_page_cannot_run(assets, text_bundle, tmp_path):
    for make in (lambda: make_server(text_bundle, port=0), lambda: write_site(text_bundle, tmp_path / "site")):
        with pytest.raises(BundleError, match="holds text data; the explorer page runs image, vector, sequence bundles only"):
            make().server_close()
    assert not (tmp_path / "site").exists()
