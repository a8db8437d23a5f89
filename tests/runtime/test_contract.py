"""The bundle contract: what export writes is what the runtime reads, named in one place."""

import json
import shutil

import numpy as np
import pytest
import vae_edge.runtime
from vae_edge.runtime import VAE, BundleError, contract
from vae_edge.runtime.cli import cli as run_main
from vae_edge.runtime.clitools import run_cli
from vae_edge.runtime.validation import check_int, one_line, quote


def test_written_manifest_and_graphs_follow_the_specs(bundle):
    m = json.loads((bundle / contract.MANIFEST).read_text())
    specs = contract.manifest_graphs(m)
    assert m["schema"] == contract.SCHEMA and specs == contract.MODALITIES[m["data"]["kind"]] == (contract.ENCODER, contract.DECODER, contract.SCORE)
    assert contract.variant_graphs(m, "int8") == specs and contract.SCORE.optional and not contract.ENCODER.optional
    dims = contract.sizes(m["data"]["shape"], m["model"]["latent_dim"])
    assert m["graphs"] == {spec.name: spec.shapes(dims) for spec in specs}
    vae = VAE.load(bundle, precision="int8")
    for spec in specs:
        session = vae.session(spec.name)
        assert [i.name for i in session.get_inputs()] == list(spec.inputs) and [o.name for o in session.get_outputs()] == list(spec.outputs)
        assert ([list(a.shape[1:]) for a in session.get_inputs()], [list(a.shape[1:]) for a in session.get_outputs()]) == spec.per_sample(dims)
        meta = session.get_modelmeta().custom_metadata_map
        assert meta[contract.META_SCHEMA] == contract.SCHEMA
        assert {k: meta[k] for k in contract.exact_metadata(m["model"]["latent_dim"], m["data"]["shape"], m["model"]["likelihood"])} == \
            contract.exact_metadata(m["model"]["latent_dim"], m["data"]["shape"], m["model"]["likelihood"])
        assert spec.dynamic_axes == {t: {0: "batch"} for t in (*spec.inputs, *spec.outputs)}
    for variant, entry in m["variants"].items():
        assert {s.name: entry[s.name] for s in specs} == contract.variant_files(specs, variant)
        assert entry["bytes"] == contract.variant_bytes(m, variant) == sum((bundle / entry[s.name]).stat().st_size for s in specs)
    listed = contract.files_section(bundle)
    assert listed.pop(contract.MANIFEST) and m["files"] == listed  # every file but the manifest itself


def test_file_and_quantile_names():
    assert contract.ENCODER.filename() == "encoder.onnx"
    assert contract.DECODER.filename("int8") == "decoder.int8.onnx" and contract.ENCODER.filename("fp16", "ort") == "encoder.fp16.ort"
    for q, name in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
        assert contract.quantile_name(q) == name and contract.quantile_fraction(name) == pytest.approx(q)
    assert contract.quantile_fraction("median") is None and contract.quantile_fraction("px") is None
    stored = {"p50": 1.0, "p99.9": 2.0}
    assert contract.find_quantile(0.999, stored) == "p99.9" and contract.find_quantile("p50", stored) == "p50"
    with pytest.raises(ValueError, match=r"it stores p50 \(0.5\), p99.9 \(0.999\)"):
        contract.find_quantile(0.9, stored)


def test_an_unknown_data_kind_is_refused_by_the_reader(bundle_copy):
    m = json.loads((bundle_copy / contract.MANIFEST).read_text())
    m["data"]["kind"] = "hologram"
    (bundle_copy / contract.MANIFEST).write_text(json.dumps(m))
    for load in (VAE.load, vae_edge.runtime.load):
        with pytest.raises(BundleError, match="data kind 'hologram' is not one this runtime knows"):
            load(bundle_copy)


def test_load_returns_the_modality_object(bundle):
    vae = vae_edge.runtime.load(bundle, precision="int8", threads=1)
    assert type(vae) is VAE and vae.precision == "int8" and vae.path == bundle
    assert type(vae_edge.runtime.load()) is VAE and vae_edge.runtime.load().path == vae_edge.runtime.default_bundle_path()
    with pytest.raises(ValueError, match="precision 'int4' is not in this bundle"):
        vae_edge.runtime.load(bundle, precision="int4")


def test_public_accessors(bundle, test_digits):
    vae = VAE.load(bundle)
    assert vae.session("decoder").get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(KeyError):
        vae.session("decoder_step")
    vae.validate(test_digits[:2])
    with pytest.raises(ValueError, match="x: expected shape"):
        vae.validate(np.zeros((2, 3)))
    xm = vae.normalize(test_digits[:3])
    np.testing.assert_allclose(vae.denormalize(xm), test_digits[:3], rtol=1e-6)
    assert vae.denormalize(xm) is not xm


@pytest.mark.parametrize("text", ["\n", "a\r\nb", "x\u2028y", "\x0b\x0c\x1c\x85"])
def test_every_error_message_is_one_line_whatever_the_user_string_holds(tmp_path, capsys, text):
    for call in (lambda: VAE.load(providers=[text]), lambda: VAE.load(precision=text), lambda: VAE.load(optimization=text),
                 lambda: VAE.load(tmp_path / text), lambda: VAE.load(format=text)):
        with pytest.raises(ValueError) as info:
            call()
        assert len(str(info.value).splitlines()) == 1, repr(str(info.value))
    with pytest.raises(ValueError) as info:
        check_int("n", text, minimum=0)
    assert len(str(info.value).splitlines()) == 1
    assert len(quote(np.eye(3)).splitlines()) == 1 and len(quote("x" * 500)) == 120
    assert one_line(f"a{text}b").startswith("a") and len(one_line(f"a{text}b").splitlines()) == 1
    for args in (["sample", str(tmp_path / f"no{text}bundle")], ["sample", "--precision", text], ["score", str(tmp_path / f"x{text}.npy")]):
        with pytest.raises(SystemExit) as done:
            run_cli(run_main, args=args, prog_name="vae-run")  # what the console script runs
        printed = capsys.readouterr().err
        assert done.value.code == 2 and printed.startswith("Error: ") and len(printed.splitlines()) == 1, printed


def test_a_bundle_path_with_a_line_break_is_named_on_one_line(tmp_path, bundle):
    odd = tmp_path / "odd\nname"
    shutil.copytree(bundle, odd)
    (odd / "decoder.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError) as info:
        VAE.load(odd)
    assert "odd\\nname" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_the_auto_variant_names_the_variant_of_each_graph_and_its_session_config():
    from vae_edge.runtime import contract

    auto = {"encoder": "encoder.int8-static.onnx", "decoder": "decoder.int8-weights.onnx", "from": {"encoder": "int8-static", "decoder": "int8-weights"}}
    assert contract.graph_variant(auto, contract.AUTO, "encoder") == "int8-static"
    assert contract.session_config(auto, contract.AUTO, "decoder") == {"session.disable_quant_qdq": "1"}
    assert contract.session_config(auto, contract.AUTO, "encoder") == {}
    # The composed score graph is the auto variant's own: QDQ handling stays on unless every source agrees.
    assert contract.session_config(auto, contract.AUTO, "score") == {}
    same = {**auto, "from": {"encoder": "int8-weights", "decoder": "int8-weights"}}
    assert contract.session_config(same, contract.AUTO, "score") == {"session.disable_quant_qdq": "1"}
    assert contract.session_config({}, "int8-weights", "encoder") == {"session.disable_quant_qdq": "1"}
    with pytest.raises(ValueError, match="names no known variant for its decoder"):
        contract.graph_variant({"from": {"decoder": "int3"}}, contract.AUTO, "decoder")


def test_a_variant_without_an_optional_graph_reads_without_it(bundle):
    m = json.loads((bundle / contract.MANIFEST).read_text())
    m["variants"]["int8"].pop(contract.SCORE.name)
    assert contract.variant_graphs(m, "int8") == (contract.ENCODER, contract.DECODER)
    assert contract.variant_graphs(m, "fp32") == (contract.ENCODER, contract.DECODER, contract.SCORE)
    assert contract.variant_graphs(m, "fp32", "ort") == (contract.ENCODER, contract.DECODER)  # exported without --ort
