"""vae-run evaluate and the numpy metrics behind it (checked against scikit-learn on the workstation)."""

import json

import numpy as np
import pytest
from helpers import invoke, one_line_error

from vae_edge.runtime import evaluation
from vae_edge.runtime.cli import cli as run_main


def test_auc_and_average_precision_match_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    normal = np.round(rng.normal(0, 1, 300), 1)  # rounded: many ties
    anomalous = np.round(rng.normal(1, 1, 100), 1)
    y = np.r_[np.zeros(300), np.ones(100)]
    s = np.r_[normal, anomalous]
    assert evaluation.roc_auc(normal, anomalous) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert evaluation.average_precision(normal, anomalous) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr = evaluation.roc_curve(normal, anomalous)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and (np.diff(fpr) >= 0).all()


def test_threshold_for_a_false_alarm_rate():
    normal = np.arange(100.0)
    limit = evaluation.threshold_for_false_alarms(normal, 0.05)
    assert np.mean(normal > limit) == 0.05
    assert np.mean(normal > evaluation.threshold_for_false_alarms(normal, 0.0)) == 0
    assert np.mean(normal > evaluation.threshold_for_false_alarms(normal, 1.0)) == 1
    r = evaluation.at_threshold(normal, np.array([200.0, 50.0]), limit)
    assert r["recall"] == 0.5 and r["false_alarm_rate"] == 0.05


def test_evaluate_cli_text_json_roc_and_labels(tmp_path, test_digits):
    normal, odd = test_digits[:32], np.clip(test_digits[32:64][..., ::-1].transpose(0, 1, 3, 2) * 1.5, 0, 16)
    np.save(tmp_path / "n.npy", normal)
    np.save(tmp_path / "a.npy", odd)
    result = invoke(run_main, ["evaluate", tmp_path / "n.npy", tmp_path / "a.npy", "--false-alarm", 0.05, "--roc", tmp_path / "plots" / "roc.png"])
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output and "p99 (validation)" in result.output and "false alarms <= 0.05" in result.output
    # A missing folder is made when the file is written, as for every output (docs/cli.md).
    assert (tmp_path / "plots" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = invoke(run_main, ["evaluate", tmp_path / "n.npy", tmp_path / "a.npy", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    np.save(tmp_path / "x.npy", np.concatenate([normal, odd]))
    np.save(tmp_path / "y.npy", np.r_[np.zeros(32), np.ones(32)])
    result = invoke(run_main, ["evaluate", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--json"])
    assert result.exit_code == 0 and result.stdout.startswith("{"), result.output
    labelled = json.loads(result.stdout)
    assert got["roc_auc"] == labelled["roc_auc"] and 0 <= got["roc_auc"] <= 1
    assert set(got["thresholds"]) == {"p50", "p90", "p95", "p99", "p99.9"}
    np.save(tmp_path / "y3.npy", np.r_[np.zeros(32), np.full(32, 2)])
    # A refused run leaves no folder behind: none is made before the file is written.
    one_line_error(invoke(run_main, ["evaluate", tmp_path / "x.npy", "--labels", tmp_path / "y3.npy", "--roc", tmp_path / "nowhere" / "roc.png"]), 2, "labels must be 0")
    assert not (tmp_path / "nowhere").exists()
    one_line_error(invoke(run_main, ["evaluate", tmp_path / "n.npy"]), 2, "NORMAL ANOMALOUS")
