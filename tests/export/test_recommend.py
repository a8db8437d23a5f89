"""--quantize auto's recommendation under --no-latency: a fixed preference, never a timing, so that the
same model exports to the same manifest (`make bundle`)."""

import json

from vae_edge.export.bundle import ExportOptions, export_bundle
from vae_edge.export.recommend import UNTIMED_PREFERENCE


def test_untimed_auto_follows_the_fixed_preference_and_records_it(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    export_bundle(model_path, tmp_path / "a", ExportOptions(variants=("auto",), latency=None))
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    recommended = m["quantization"]["recommended"]
    assert recommended["basis"] == "fixed" and "not timed" in recommended["rule"]
    assert "int8-weights" in m["variants"]  # held its gate on this model: the preference's first choice
    for graph in ("encoder", "decoder"):
        entry = recommended["graphs"][graph]
        assert entry["order"] == [v for v in UNTIMED_PREFERENCE if v in m["variants"]]
        assert entry["variant"] == "int8-weights" and "fastest_batch_1" not in entry
        assert all(set(row) == {"bytes", "eligible"} for row in entry["candidates"].values())  # no timings
    assert m["variants"]["auto"]["from"] == {"encoder": "int8-weights", "decoder": "int8-weights"}
    assert m["variants"]["auto"]["score"] == m["variants"]["int8-weights"]["score"]  # one variant's pair: its score graph, no copy
    assert "score.auto.onnx" not in m["files"]
    assert "fixed preference (not timed)" in m["variants"]["auto"]["method"]


def test_untimed_preference_puts_fp32_first_where_int8_weights_is_not_smaller(tmp_path):
    from types import SimpleNamespace

    from vae_edge.export.recommend import _rank_fixed

    for name, size in {"e.onnx": 100, "e.w.onnx": 40, "d.onnx": 100, "d.w.onnx": 110}.items():
        (tmp_path / name).write_bytes(b"x" * size)
    variants = {"fp32": {"encoder": "e.onnx", "decoder": "d.onnx"}, "int8-weights": {"encoder": "e.w.onnx", "decoder": "d.w.onnx"}}
    specs = [SimpleNamespace(name="encoder"), SimpleNamespace(name="decoder")]
    section, ranked, _ = _rank_fixed(tmp_path, specs, variants)
    assert ranked == {"encoder": ["int8-weights", "fp32"], "decoder": ["fp32", "int8-weights"]}  # a tiny decoder: more bytes quantized
    assert section["graphs"]["decoder"]["candidates"]["int8-weights"]["bytes"] == 110


def test_auto_falls_back_to_the_fp32_pair_even_under_a_zero_tolerance(model_path, tmp_path):
    # Nothing else holds a --tolerance of 0, and fp32's own graphs differ from PyTorch by float rounding
    # (~1e-9): the reference pair, held to fp32's gate, is the recommendation, not a crash or a failed export.
    m = export_bundle(model_path, tmp_path / "a", ExportOptions(variants=("auto",), latency=None, tolerance=0.0, search=False)).manifest
    assert list(m["variants"]) == ["fp32", "auto"] and m["quantization"]["recommended"]["chosen"] == {"encoder": "fp32", "decoder": "fp32"}
    assert m["variants"]["auto"]["accuracy"]["passed"] is True and m["variants"]["auto"]["score"] == "score.onnx"
