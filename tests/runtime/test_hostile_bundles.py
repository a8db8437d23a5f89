"""Hostile bundles: each test builds a folder as an attacker who controls it would (manifest rehashed),
and the runtime must refuse it with one BundleError line, before onnxruntime runs anything."""

import json
import os
import shutil
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vae_edge.runtime import VAE, contract
from vae_edge.runtime.bundle import BundleError, default_bundle_path, read_manifest
from vae_edge.runtime.files import atomic_directory
from vae_edge.runtime.graphcheck import inspect_onnx, ort_control_flow

# The default bundle's sizes: a replacement graph must fit the manifest it is put under.
LATENT, SHAPE = read_manifest(default_bundle_path())["model"]["latent_dim"], [1, 8, 8]


@pytest.fixture
def hostile(tmp_path):
    """A private copy of the default bundle to tamper with."""
    dst = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), dst)
    return dst


def manifest_of(folder):
    return json.loads((folder / contract.MANIFEST).read_text())


def rehash(folder, manifest=None):
    """Rewrite the files section as an attacker who controls the folder would."""
    m = manifest if manifest is not None else manifest_of(folder)
    (folder / contract.MANIFEST).unlink()
    m["files"] = contract.files_section(folder)
    (folder / contract.MANIFEST).write_text(json.dumps(m))


def replace_decoder(folder, graph, *, meta_from="decoder.onnx"):
    """Save ``graph`` as decoder.onnx with the real decoder's metadata, and rehash."""
    original = onnx.load(folder / meta_from)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = original.ir_version
    for p in original.metadata_props:
        model.metadata_props.add(key=p.key, value=p.value)
    onnx.save(model, folder / "decoder.onnx")
    rehash(folder)


def decoder_graph(out_type=TensorProto.FLOAT, out_shape=("batch", 1, 8, 8), reshape=(-1, 1, 8, 8), reduce_batch=False, extra_nodes=()):
    w = numpy_helper.from_array(np.full((LATENT, 64), 0.01, np.float32), "w")
    s = numpy_helper.from_array(np.array(reshape, np.int64), "s")
    nodes = [helper.make_node("MatMul", ["z", "w"], ["h"])]
    last = "h"
    if reduce_batch:
        nodes.append(helper.make_node("ReduceMean", ["h"], ["hm"], keepdims=1, axes=[0]))
        last = "hm"
    # The target shape is computed from z (0 * sum(z) + s), so that shape inference cannot see through
    # it and the graph's declared output shape stands, as a hostile graph's would.
    nodes += [
        helper.make_node("ReduceSum", ["z"], ["zs"], keepdims=0),
        helper.make_node("Mul", ["zs", "zero"], ["z0"]),
        helper.make_node("Cast", ["z0"], ["z0i"], to=TensorProto.INT64),
        helper.make_node("Add", ["s", "z0i"], ["s2"]),
        helper.make_node("Reshape", [last, "s2"], ["r"]),
        helper.make_node("Sigmoid", ["r"], ["sg"]),
    ]
    if out_type == TensorProto.FLOAT:
        nodes.append(helper.make_node("Identity", ["sg"], ["x_mean"]))
    else:
        nodes.append(helper.make_node("Cast", ["sg"], ["x_mean"], to=out_type))
    nodes += list(extra_nodes)
    return helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", LATENT])],
        [helper.make_tensor_value_info("x_mean", out_type, list(out_shape))],
        [w, s, numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )


def test_a_well_formed_replacement_decoder_loads(hostile):
    # The harness itself: a graph built here passes every check unless a test breaks a rule.
    replace_decoder(hostile, decoder_graph())
    assert VAE.load(hostile).decode(np.zeros(LATENT, np.float32)).shape == tuple(SHAPE)


def test_external_data_is_refused_before_anything_reads_it(hostile, tmp_path, monkeypatch):
    secret = tmp_path / ".secret"
    secret.mkdir()
    (secret / "id_rsa").write_bytes(b"PRIVATE KEY " * 300)
    graph = decoder_graph()
    w = graph.initializer[0]
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=".secret/id_rsa")
    replace_decoder(hostile, graph)
    monkeypatch.chdir(tmp_path)  # onnxruntime would resolve the location against the current folder
    with pytest.raises(BundleError, match="external data"):
        VAE.load(hostile)


@pytest.mark.parametrize("op", ["Loop", "Scan", "If"])
def test_control_flow_is_refused(hostile, op):
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"])], "body",
                             [helper.make_tensor_value_info("c", TensorProto.FLOAT, [])], [helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [])])
    attrs = {"Loop": {"body": body}, "Scan": {"body": body, "num_scan_inputs": 1}, "If": {"then_branch": body, "else_branch": body}}[op]
    node = helper.make_node(op, ["trip", "cond", "v"], ["unused"], **attrs)
    graph = decoder_graph(extra_nodes=[node])
    graph.initializer.extend([numpy_helper.from_array(np.array(10**15, np.int64), "trip"), numpy_helper.from_array(np.array(True), "cond"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "v")])
    replace_decoder(hostile, graph)
    with pytest.raises(BundleError, match=f"control flow \\({op}\\)"):
        VAE.load(hostile)


def test_control_flow_in_an_ort_format_file_is_found():
    # ORT files are flatbuffers: strings are stored length-prefixed and NUL-terminated.
    assert ort_control_flow(b"\x00\x04\x00\x00\x00Loop\x00\x00") == ["Loop"]
    assert ort_control_flow(b"\x00\x09\x00\x00\x00LoopCount\x00") == []


@pytest.mark.parametrize("out_type", [TensorProto.INT32, TensorProto.BOOL, TensorProto.STRING, TensorProto.DOUBLE])
def test_graphs_whose_outputs_are_not_float32_are_refused(hostile, out_type):
    replace_decoder(hostile, decoder_graph(out_type=out_type))
    with pytest.raises(BundleError, match="must be tensor\\(float\\)"):
        VAE.load(hostile)


def test_a_graph_giving_another_shape_than_it_declares_is_refused(hostile):
    replace_decoder(hostile, decoder_graph(reshape=(-1, 1, 4, 16)))  # declares [batch, 1, 8, 8]
    with pytest.raises(BundleError, match="for a batch of 2"):
        VAE.load(hostile)


def test_a_graph_giving_one_row_whatever_the_batch_is_refused(hostile):
    replace_decoder(hostile, decoder_graph(reshape=(1, 1, 8, 8), reduce_batch=True))
    with pytest.raises(BundleError, match="for a batch of 2"):
        VAE.load(hostile)


def test_a_fixed_batch_axis_is_refused(hostile):
    replace_decoder(hostile, decoder_graph(out_shape=(1, 1, 8, 8)))
    with pytest.raises(BundleError, match="dynamic batch axis"):
        VAE.load(hostile)


def test_fp32_naming_the_int8_files_is_detected(hostile):
    m = manifest_of(hostile)
    m["variants"]["fp32"].update(encoder="encoder.int8.onnx", decoder="decoder.int8.onnx")
    rehash(hostile, m)
    with pytest.raises(BundleError, match="is not a float32 graph"):
        VAE.load(hostile, precision="fp32")


def test_int8_naming_the_fp32_files_is_detected(hostile):
    m = manifest_of(hostile)
    m["variants"]["int8"].update(encoder="encoder.onnx", decoder="decoder.onnx")
    rehash(hostile, m)
    with pytest.raises(BundleError, match="carries no variant method"):
        VAE.load(hostile, precision="int8")


def test_a_quantised_graph_stripped_of_its_stamp_is_still_not_fp32(hostile):
    model = onnx.load(hostile / "decoder.int8.onnx")
    kept = [p for p in model.metadata_props if p.key != contract.META_VARIANT_METHOD]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, hostile / "decoder.onnx")
    rehash(hostile)
    with pytest.raises(BundleError, match="DynamicQuantizeLinear"):
        VAE.load(hostile)


def test_graph_facts_of_the_default_bundle():
    facts = inspect_onnx((default_bundle_path() / "decoder.int8.onnx").read_bytes())
    assert "MatMulInteger" in facts.ops and not facts.external and not facts.subgraphs
    assert facts.metadata[contract.META_LATENT_DIM] == str(LATENT)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "outside"])
def test_a_manifest_that_is_not_a_regular_file_inside_the_folder_is_refused(hostile, tmp_path, target):
    mpath = hostile / contract.MANIFEST
    if target == "fifo":
        mpath.unlink()
        os.mkfifo(mpath)  # reading it would wait for a writer forever
        match = "named pipe"
    else:
        if target == "outside":
            (tmp_path / "elsewhere.json").write_text(mpath.read_text())
            target, match = str(tmp_path / "elsewhere.json"), "outside the bundle folder"
        else:
            match = "outside the bundle folder"
        mpath.unlink()
        mpath.symlink_to(target)
    with pytest.raises(BundleError, match=match):
        read_manifest(hostile)


def test_a_graph_file_that_is_a_fifo_is_refused(hostile):
    (hostile / "decoder.onnx").unlink()
    os.mkfifo(hostile / "decoder.onnx")
    with pytest.raises(BundleError, match="named pipe"):
        VAE.load(hostile)


def test_an_oversized_manifest_is_refused_before_it_is_read(hostile):
    with open(hostile / contract.MANIFEST, "r+b") as f:
        f.truncate(contract.MAX_MANIFEST_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(BundleError, match="more than the"):
        read_manifest(hostile)


@pytest.mark.parametrize("depth", [40, 100_000])
def test_a_deeply_nested_manifest_is_one_bundle_error(hostile, depth):
    m = manifest_of(hostile)
    (hostile / contract.MANIFEST).write_text(json.dumps(m)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(BundleError, match="nested") as caught:
        read_manifest(hostile)
    assert str(hostile) in str(caught.value)


def test_escape_sequences_in_a_manifest_never_reach_the_terminal(hostile):
    from helpers import invoke

    from vae_edge.runtime.cli import cli

    m = manifest_of(hostile)
    m["data"]["dataset"] = "digits\x1b[2J\x1b]0;pwned\x07\u202e"
    m["variants"]["int8"]["method"] = "evil\x9b31m"
    rehash(hostile, m)
    for args in (["info", hostile], ["info", "--json", hostile]):
        result = invoke(cli, args)
        assert not any(c in result.output for c in "\x1b\x07\x9b\u202e"), result.output
    assert json.loads(invoke(cli, ["info", "--json", hostile]).output)["data"]["dataset"] == m["data"]["dataset"]
    m["schema"] = "vae-edge/\x1b[31m/9"
    (hostile / contract.MANIFEST).write_text(json.dumps(m))
    result = invoke(cli, ["info", hostile])
    assert result.exit_code == 2 and "\x1b" not in result.output and "\\x1b" in result.output


def test_a_load_during_concurrent_swaps_sees_one_bundle_or_the_other(tmp_path):
    dest = tmp_path / "live"
    shutil.copytree(default_bundle_path(), dest)
    stop, errors = threading.Event(), []

    def swapper():
        try:
            while not stop.is_set():
                with atomic_directory(dest) as tmp:
                    for f in default_bundle_path().iterdir():
                        shutil.copy(f, tmp / f.name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=swapper) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(25):
            assert VAE.load(dest, threads=1).latent_dim == LATENT
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]  # no .tmp or .old folders left
