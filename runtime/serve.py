"""The latent explorer page: served by `vae-run serve` (standard-library HTTP) or written as a static folder.

Everything the page loads comes from this checkout, never a CDN: the page itself and the JavaScript
runtime from runtime-js/ (web/ and src/), onnxruntime-web's wasm build from runtime-js/node_modules
(`npm ci` in runtime-js, which `make test` runs when npm is present; 14 MB, so it is not copied into the
Python package), and the bundle's files. ``VAE_EDGE_JS`` names another runtime-js folder (e.g. an
installed copy of the npm package).

URL layout (the same in the static folder): ``/`` the page, ``/web/...`` its script and style,
``/runtime/...`` the runtime's modules, ``/ort/...`` onnxruntime-web, ``/bundle/...`` the bundle.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .bundle import MANIFEST, BundleError, read_manifest
from .contract import DEFAULT_KIND
from .files import atomic_directory

log = logging.getLogger(__name__)

# The data kinds runtime-js implements (runtime-js/src/manifest.js KINDS): a page for another only fails.
PAGE_KINDS = ("image", "vector", "sequence")
# onnxruntime-web's wasm backend: its ES module, the loader it imports and the SIMD wasm binary.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".json": "application/json", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
         ".ort": "application/octet-stream", ".png": "image/png", ".svg": "image/svg+xml"}


class AssetsError(ValueError):
    """The page's files (runtime-js, onnxruntime-web) are not where the explorer looks for them."""


def runtime_js() -> Path:
    """The runtime-js folder: ``VAE_EDGE_JS``, else the one beside this package in a checkout.

    Raises:
        AssetsError: not found, or its onnxruntime-web files are missing (``npm ci`` not run).
    """
    env = os.environ.get("VAE_EDGE_JS")
    root = Path(env) if env else Path(__file__).resolve().parent.parent / "runtime-js"
    if not (root / "web" / "index.html").is_file() or not (root / "src" / "browser.js").is_file():
        raise AssetsError(f"{root}: not a runtime-js folder (the explorer page lives in a vae-edge checkout's runtime-js/, or set VAE_EDGE_JS)")
    dist = root / "node_modules" / "onnxruntime-web" / "dist"
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise AssetsError(f"{dist}: lacks {', '.join(missing)}; run `ONNXRUNTIME_NODE_INSTALL=skip npm ci` in {root} (or `make js`)")
    return root


def routes(bundle: Path, js: Path) -> dict[str, Path]:
    """URL path -> file, for everything the page may load (nothing else is served).

    Raises:
        BundleError: not a bundle, or one of a data kind the page's runtime does not run (audio, text).
    """
    manifest = read_manifest(bundle)
    kind = manifest["data"].get("kind", DEFAULT_KIND)
    if kind not in PAGE_KINDS:
        raise BundleError(f"{bundle}: holds {kind} data; the explorer page runs {', '.join(PAGE_KINDS)} bundles only (runtime-js)")
    table = {"/": js / "web" / "index.html"}
    for sub, prefix in ((js / "web", "/web/"), (js / "src", "/runtime/")):
        for f in sorted(sub.iterdir()):
            if f.is_file() and f.suffix in TYPES:
                table[prefix + f.name] = f
    dist = js / "node_modules" / "onnxruntime-web" / "dist"
    for name in ORT_FILES:
        table["/ort/" + name] = dist / name
    for name in [MANIFEST, *manifest["files"]]:
        pure = PurePosixPath(name)
        if len(pure.parts) == 1 and ".." not in pure.parts and (bundle / name).is_file():
            table["/bundle/" + name] = bundle / name  # the browser verifies each file's sha256 itself
    return table


class _Handler(BaseHTTPRequestHandler):
    server_version = "vae-edge"

    def __init__(self, *args, table: dict[str, Path], **kwargs):
        self.table = table
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._send(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head=True)

    def _send(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        target = self.table.get(path)
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not part of the explorer")
            return
        try:
            body = target.read_bytes()  # read per request: a bundle file changed on disk is served as it now is
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "gone")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", TYPES.get(target.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.address_string(), format % args)


class ExplorerServer(ThreadingHTTPServer):
    daemon_threads = True
    bundle: Path


def make_server(bundle: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000) -> ExplorerServer:
    """An HTTP server for the explorer page of ``bundle`` (not yet serving: call ``serve_forever``).

    Raises:
        BundleError: ``bundle`` is not a bundle folder.
        AssetsError: runtime-js or onnxruntime-web not found.
        OSError: the port cannot be bound.
    """
    root = Path(bundle)
    table = routes(root, runtime_js())
    server = ExplorerServer((host, port), partial(_Handler, table=table))
    server.bundle = root
    return server


def write_site(bundle: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """The explorer as a static folder ``dest`` (any static web server can serve it), written atomically.

    Raises:
        BundleError, AssetsError: as :func:`make_server`.
        ValueError: ``dest`` exists and is not an earlier explorer folder.
    """
    root, out = Path(bundle), Path(dest)
    table = routes(root, runtime_js())
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())):
        raise ValueError(f"{out}: exists and is not an explorer folder (no index.html); refusing to replace it")
    with atomic_directory(out) as tmp:
        for url, src in table.items():
            target = tmp / ("index.html" if url == "/" else url.lstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        (tmp / "site.json").write_text(json.dumps({"bundle": "bundle/", "files": sorted(table)}, indent=1) + "\n")
    return out


__all__ = ["AssetsError", "BundleError", "make_server", "routes", "runtime_js", "write_site"]
