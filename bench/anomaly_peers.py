"""vae-edge against the anomaly detectors users reach for (pyod's VAE, AutoEncoder and IsolationForest),
on the same splits, by ROC AUC of the test scores: ``python -m bench.anomaly_peers [--out results.json]``.

Needs the ``peers`` extra (``pip install -e '.[peers]'``: pyod; its VAE and AutoEncoder run on our
pinned torch). Data ship with scikit-learn (no download): the breast-cancer table (benign = normal,
malignant = anomalous) and the 8x8 digits (one digit normal, every other digit anomalous).

Per data set and seed: the normal samples are shuffled; 70 % train every detector (vae-edge's own
split of them into train/validation/test happens inside vae-train); the other 30 % and the anomalies
(digits: 300 drawn from the other digits) are the test set. vae-edge runs as a new user would run it,
with no likelihood given (``--likelihood auto``), then ``vae-export`` (fp32 + the shipped int8);
its scores come from the runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2)
TRAIN_FRACTION = 0.7
DIGIT_ANOMALIES = 300
# vae-train as a new user runs it: no settings given, so these training splits (100 to 250 rows) get its
# small-data settings (trainer.config.size_settings: a linear VAE, latent 4, ELBO, lr 0.01, batch 32, 300
# epochs; likelihood auto); only the IWAE estimate at the end is cut short (it does not change the model).
# Figures and what was tried: docs/anomaly.md.
VAE_ARGS = ("--iw-samples", "50")


def splits(name: str, seed: int, digit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train normal, test normal, test anomalous) for a data set and seed."""
    from sklearn.datasets import load_breast_cancer, load_digits

    rng = np.random.default_rng(seed)
    if name == "breast_cancer":
        d = load_breast_cancer()
        normal, anomalous = d.data[d.target == 1], d.data[d.target == 0]  # target 1 = benign
    elif name == "digits":
        d = load_digits()
        normal, others = d.data[d.target == digit], d.data[d.target != digit]
        anomalous = others[rng.choice(len(others), DIGIT_ANOMALIES, replace=False)]
    else:
        raise ValueError(f"unknown data set {name!r}")
    normal = normal[rng.permutation(len(normal))]
    cut = int(round(TRAIN_FRACTION * len(normal)))
    f = np.float32
    return normal[:cut].astype(f), normal[cut:].astype(f), anomalous.astype(f)


def vae_edge_scores(train: np.ndarray, tests: list[np.ndarray], seed: int, work: Path) -> dict[str, list[np.ndarray]]:
    """Train with vae-train, export with vae-export (fp32 + int8), score ``tests`` with the runtime."""
    from vae_edge.runtime import VAE

    np.save(work / "train.npy", train)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "vae_edge.trainer", "--data", f"npy:{work / 'train.npy'}", *VAE_ARGS, "--seed", str(seed), "--out", str(work / "m.pt"), "-q"]
    subprocess.run(run, check=True, env=env, capture_output=True)
    from vae_edge.export.bundle import ExportOptions, export_bundle

    export_bundle(work / "m.pt", work / "b", ExportOptions(variants=("int8",), latency=None))
    return {p: [VAE.load(work / "b", precision=p, threads=1).anomaly_score(t) for t in tests] for p in ("fp32", "int8")}


def peer_scores(train: np.ndarray, tests: list[np.ndarray], seed: int) -> dict[str, list[np.ndarray]]:
    """pyod's detectors with their defaults (contamination only sets their own threshold, unused here)."""
    import torch
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.iforest import IForest
    from pyod.models.vae import VAE as PyodVAE

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    out = {}
    for name, make in (("pyod VAE", lambda: PyodVAE(random_state=seed, verbose=0)),
                       ("pyod AutoEncoder", lambda: AutoEncoder(random_state=seed, verbose=0)),
                       ("pyod IForest", lambda: IForest(random_state=seed))):
        model = make()
        model.fit(train)
        out[name] = [model.decision_function(t) for t in tests]
    return out


def main(argv: list[str] | None = None) -> None:
    from vae_edge.runtime.evaluation import roc_auc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="breast_cancer,digits")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--digit", type=int, default=0, help="the digit that is normal (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    rows = []
    for name in args.sets.split(","):
        for seed in map(int, args.seeds.split(",")):
            train, normal, anomalous = splits(name, seed, args.digit)
            with tempfile.TemporaryDirectory() as tmp:
                scores = vae_edge_scores(train, [normal, anomalous], seed, Path(tmp))
            scores |= peer_scores(train, [normal, anomalous], seed)
            row = {"set": name if name != "digits" else f"digits (normal {args.digit})", "seed": seed,
                   "auc": {k: roc_auc(n, a) for k, (n, a) in scores.items()}}
            rows.append(row)
            print(f"{row['set']:<20} seed {seed}  " + "  ".join(f"{k} {v:.4f}" for k, v in row["auc"].items()), flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average_1min": os.getloadavg()[0], "vae_args": VAE_ARGS, "rows": rows}
    print(f"load average (1 min) at the end: {result['load_average_1min']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
