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
    assert "fixed preference (not timed)" in m["variants"]["auto"]["method"]
