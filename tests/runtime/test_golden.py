"""The conformance set every image, vector and text bundle carries (golden.json) and `vae-run selftest`, which checks it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge.runtime import VAE, BundleError
from vae_edge.runtime.cli import cli
from vae_edge.runtime.golden import GOLDEN, OUTPUTS, decode_array, read_golden


def _rehash(folder, name):
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_every_variant_records_every_output(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert GOLDEN in manifest["files"]
    golden = read_golden(bundle, manifest)
    assert set(golden["variants"]) == set(manifest["variants"])
    x = decode_array(golden["inputs"]["x"], "x")
    assert x.dtype == np.float32 and x.shape[1:] == tuple(manifest["data"]["shape"])
    for entry in golden["variants"].values():
        assert set(entry["outputs"]) == set(OUTPUTS)
    # The outlier scores above the threshold, the held-out samples below it: decisions of both kinds.
    assert decode_array(golden["variants"]["fp32"]["outputs"]["is_anomaly"], "d").tolist() == [False, False, False, True]
    # float32 values survive the text exactly.
    vae = VAE.load(bundle, threads=1)
    np.testing.assert_array_equal(decode_array(golden["variants"]["fp32"]["outputs"]["decode"], "d"), vae.decode(decode_array(golden["inputs"]["z"], "z")))


def test_selftest_passes_on_an_untouched_bundle(bundle):
    result = CliRunner().invoke(cli, ["selftest", str(bundle), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "✓ int8 is_anomaly" in result.output and "selftest passed: 18 outputs" in result.output


def test_selftest_names_the_output_and_the_difference(bundle_copy):
    golden = json.loads((bundle_copy / GOLDEN).read_text())
    golden["variants"]["int8"]["outputs"]["decode"]["data"][5] += 0.5  # as if this runtime decoded differently
    (bundle_copy / GOLDEN).write_text(json.dumps(golden))
    _rehash(bundle_copy, GOLDEN)
    result = CliRunner().invoke(cli, ["selftest", str(bundle_copy)])
    assert result.exit_code == 1
    assert "✗ int8 decode: max |difference| 0.5" in result.output and "at flat index 5" in result.output
    assert "1 of 18 outputs differ from the conformance set: int8 decode" in result.output


def test_selftest_refuses_a_tampered_golden_file_and_a_bundle_without_one(bundle_copy):
    golden = bundle_copy / GOLDEN
    golden.write_bytes(golden.read_bytes().replace(b'"shape"', b'"shapE"', 1))
    result = CliRunner().invoke(cli, ["selftest", str(bundle_copy)])
    assert result.exit_code == 2 and f"{golden}: sha256 does not match" in result.output
    golden.unlink()
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["files"][GOLDEN]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["selftest", str(bundle_copy)])
    assert result.exit_code == 2 and "has no golden.json" in result.output and "re-export" in result.output


def test_an_audio_bundle_is_told_it_has_no_conformance_set_not_to_re_export(tmp_path):
    with pytest.raises(BundleError, match="is an audio bundle, which carries no golden.json") as err:
        read_golden(tmp_path, {"files": {}, "data": {"kind": "audio"}})
    assert "re-export" not in str(err.value)


# ---------------------------------------------------------------- text bundles
def test_a_text_bundle_records_lines_and_scores(text_bundle):
    from vae_edge.runtime import TextVAE
    from vae_edge.runtime.golden import TEXT_OUTPUTS

    manifest = json.loads((text_bundle / "manifest.json").read_text())
    golden = read_golden(text_bundle, manifest)
    assert golden["kind"] == "text" and set(golden["variants"]) == set(manifest["variants"])
    lines = decode_array(golden["inputs"]["lines"], "lines").tolist()
    assert len(lines) == 4 and all(isinstance(line, str) and line for line in lines)
    for entry in golden["variants"].values():
        assert set(entry["outputs"]) == set(TEXT_OUTPUTS)
    fp32 = golden["variants"]["fp32"]["outputs"]
    vae = TextVAE.load(text_bundle, threads=1)
    assert fp32["reconstruct"]["dtype"] == "str" and fp32["reconstruct"]["data"] == vae.reconstruct(lines)
    assert fp32["sample.top_k"]["data"] == vae.sample(4, seed=8, temperature=0.8, top_k=5)
    np.testing.assert_array_equal(decode_array(fp32["anomaly_score"], "s"), vae.anomaly_score(lines))


def test_selftest_passes_on_a_text_bundle_and_names_a_line_that_differs(tmp_path, text_bundle):
    import shutil

    result = CliRunner().invoke(cli, ["selftest", str(text_bundle), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "✓ int8 sample.top_k" in result.output and "selftest passed: 22 outputs" in result.output
    copy = tmp_path / "bundle"
    shutil.copytree(text_bundle, copy)
    golden = json.loads((copy / GOLDEN).read_text())
    golden["variants"]["fp32"]["outputs"]["reconstruct"]["data"][1] += "x"  # as if this runtime decoded differently
    (copy / GOLDEN).write_text(json.dumps(golden))
    _rehash(copy, GOLDEN)
    result = CliRunner().invoke(cli, ["selftest", str(copy)])
    assert result.exit_code == 1
    assert "✗ fp32 reconstruct: 1 of 4 lines differ; line 1 is" in result.output
    assert "1 of 22 outputs differ from the conformance set: fp32 reconstruct" in result.output
