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


def _form(node):
    """A value's structure: the keys of a dict, the element forms of a list, a leaf's type."""
    if isinstance(node, dict):
        return tuple((key, _form(child)) for key, child in node.items())
    if isinstance(node, list):
        return frozenset(_form(child) for child in node)
    return type(node).__name__


def _paths(node, prefix=()):
    """Every field's path. Outside ``variants`` (each precision is checked by name), a dict or list whose
    form repeats an earlier sibling's (a readiness entry per graph file, a latent direction per axis) is
    itself replaced and removed, but its fields are walked only in the first sibling of that form: the
    same checks meet the same fields, and the walk is well under half as long (the readiness entries
    alone are half the manifest)."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    seen = set()
    for key, child in items:
        form = _form(child) if isinstance(child, (dict, list)) and prefix[:1] != ("variants",) else None
        if form is not None and form in seen:
            yield (*prefix, key)
            continue
        seen.add(form)
        yield from _paths(child, (*prefix, key))


def _edited(path, value) -> bytes:
    """MANIFEST's bytes with the field at ``path`` replaced by ``value`` (``...``: removed); MANIFEST is
    edited in place and restored, so the walk copies nothing."""
    parent = MANIFEST
    for key in path[:-1]:
        parent = parent[key]
    key, items = path[-1], list(parent.items()) if isinstance(parent, dict) else None
    old = parent[key]
    if value is ...:
        parent.pop(key)
    else:
        parent[key] = value
    try:
        return json.dumps(MANIFEST).encode()
    finally:
        if items is not None:  # a dict gets its keys back in their order
            parent.clear()
            parent.update(items)
        elif value is ...:
            parent.insert(key, old)
        else:
            parent[key] = old


def _checked(raw: bytes) -> bool:
    try:
        check_manifest("manifest.json", parse_manifest(raw))
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
    before = json.dumps(MANIFEST)
    accepted, n_accepted = [], 0
    # The int8 variant's accuracy figures stand for the fp32 variant's, which are of the same form.
    for path in (p for p in _paths(MANIFEST) if p and p[:3] != ("variants", "fp32", "accuracy")):
        for value in [*JSON_TYPES, ...]:
            raw = _edited(path, value)
            if _checked(raw):
                if n_accepted % 50 == 0:
                    accepted.append(raw)
                n_accepted += 1
    assert accepted and json.dumps(MANIFEST) == before  # every edit was undone
    # Those the schema check lets through must load and describe; one in 50 is loaded (with its graphs
    # checked and probed), to keep the suite fast.
    for raw in accepted:
        edited = json.loads(raw)
        (folder / contract.MANIFEST).write_bytes(raw)
        try:
            vae = VAE.load(folder, precision="int8" if "int8" in edited["variants"] else next(iter(edited["variants"])))
        except ValueError as exc:
            assert "\n" not in str(exc)
            continue
        assert vae.sample(1, seed=0).shape == (1, *vae.shape) and np.isfinite(vae.anomaly_score(vae.sample(1, seed=0))).all()
        result = invoke(cli, ["info", folder])
        assert result.exit_code == 0 and "\x1b" not in result.output, result.output
