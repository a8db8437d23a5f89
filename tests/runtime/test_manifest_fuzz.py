"""Structural fuzzing of manifests: every field replaced by every JSON type (and removed). The one schema
check refuses it with one BundleError line, or the bundle loads, runs and `vae-run info` describes it.
(tests/runtime/test_fuzz.py draws nested values at random; this walks every field with every type.)"""

import json
import shutil

import numpy as np
import pytest
from helpers import invoke

from vae_edge.runtime import VAE, contract
from vae_edge.runtime.bundle import BundleError, check_manifest, default_bundle_path, parse_manifest
from vae_edge.runtime.cli import cli

# One value of each JSON type (plus a negative number, a huge one and an escape sequence).
JSON_TYPES = [None, True, -1, 0.5, 1e308, "x\x1b]0;t\x07", [1, "a"], {"k": [None]}]
MANIFEST = json.loads((default_bundle_path() / contract.MANIFEST).read_text())


def _paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def _replaced(path, value):
    out = json.loads(json.dumps(MANIFEST))
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        parent.pop(path[-1]) if isinstance(parent, dict) else parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return out


def _checked(manifest) -> bool:
    try:
        check_manifest("manifest.json", parse_manifest(json.dumps(manifest).encode()))
    except BundleError as exc:
        assert "\n" not in str(exc)
        return False
    return True


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    dst = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(default_bundle_path(), dst)
    return dst


def test_every_field_replaced_by_every_json_type(folder):
    accepted = []
    # The int8 variant's accuracy figures stand for the fp32 variant's, which are of the same form.
    for path in (p for p in _paths(MANIFEST) if p and p[:3] != ("variants", "fp32", "accuracy")):
        for value in [*JSON_TYPES, ...]:
            edited = _replaced(path, value)
            if _checked(edited):
                accepted.append(edited)
    assert accepted
    # Those the schema check lets through must load and describe; one in 50 is loaded (with its graphs
    # checked and probed), to keep the suite fast.
    for edited in accepted[::50]:
        (folder / contract.MANIFEST).write_text(json.dumps(edited))
        try:
            vae = VAE.load(folder, precision="int8" if "int8" in edited["variants"] else next(iter(edited["variants"])))
        except ValueError as exc:
            assert "\n" not in str(exc)
            continue
        assert vae.sample(1, seed=0).shape == (1, *vae.shape) and np.isfinite(vae.anomaly_score(vae.sample(1, seed=0))).all()
        result = invoke(cli, ["info", folder])
        assert result.exit_code == 0 and "\x1b" not in result.output, result.output
