"""Audio side by side, one run: `python -m bench.audio [--quick] [--json FILE]`.

On the synthetic machine task (bench/audio_data.py: normal fan/pump sound; faults clicks, bearing whine,
imbalance) it trains the audio VAE (conv and conv1d) with vae-train, exports it with vae-export (fp32 and
int8-static) and measures, through the runtime alone:

- test NLL (IWAE, from training) and the negative ELBO per clip;
- log-spectral distance (dB) between each held-out clip's log-mel and its reconstruction, and of the
  Griffin-Lim sound made from the reconstruction (its features against the input's);
- ROC AUC of the anomaly score (normal held-out clips vs each fault and all), against a DCASE-2020-style
  baseline on the same data: a plain autoencoder on 5 concatenated log-mel frames, trained with MSE,
  scoring a clip by its mean reconstruction error;
- real-time factor of live scoring on one thread: a 60 s PCM stream pushed in 128 ms blocks through
  AudioVAE.score_windows (1 s windows), audio seconds per wall second.

Prints Markdown; --json writes every figure with the date, machine and load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .audio_data import FAULTS, machine_sound, write_machine

RATE = 16000


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(list(args), capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def _folder_pcm(folder: Path) -> np.ndarray:
    from vae_edge.runtime.wavfile import read_wav

    return np.stack([read_wav(p, sample_rate=RATE)[0] for p in sorted(folder.glob("*.wav"))])


def auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """ROC AUC of scores (higher = anomalous): the probability that an anomalous clip outscores a normal one."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(y, np.r_[normal, anomalous]))


def lsd_db(a: np.ndarray, b: np.ndarray) -> float:
    """Log-spectral distance in dB between log-mel [n, M, T] (natural-log power): per frame the RMS over
    mels of the dB difference, averaged over frames and clips."""
    diff_db = (10.0 / np.log(10.0)) * (np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.sqrt((diff_db**2).mean(axis=1)).mean())


def dcase_baseline(train_feats: np.ndarray, epochs: int, seed: int = 0):
    """The DCASE 2020 task 2 baseline's shape: 5 frames x mels in dB -> 128-128-128-8-128-128-128 (ReLU) -> back,
    MSE, Adam. Returns a scorer: log-mel [n, M, T] -> mean squared error per clip."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    db = 10.0 / np.log(10.0)

    def frames(f: np.ndarray) -> np.ndarray:  # (n, M, T) -> (n, T - 4, 5 * M)
        f = f * db
        return np.stack([np.concatenate([f[:, :, t + k] for k in range(5)], axis=1) for t in range(f.shape[2] - 4)], axis=1).astype(np.float32)

    x = frames(train_feats)
    dim = x.shape[-1]
    mean, std = x.reshape(-1, dim).mean(0), x.reshape(-1, dim).std(0) + 1e-3
    widths = [dim, 128, 128, 128, 8, 128, 128, 128]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(128, dim))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = torch.from_numpy(((x - mean) / std).reshape(-1, dim))
    for _ in range(epochs):
        for idx in torch.randperm(len(data)).split(256):
            loss = ((net(data[idx]) - data[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    @torch.no_grad()
    def score(feats: np.ndarray) -> np.ndarray:
        f = torch.from_numpy((frames(feats) - mean) / std)
        return ((net(f) - f) ** 2).mean(dim=(1, 2)).double().numpy()

    return score


def real_time_factor(vae, seconds: float = 60.0, block: int = 2048) -> float:
    """Audio seconds scored per wall second, feeding a PCM stream block by block (one window per second)."""
    rng = np.random.default_rng(1)
    stream = np.concatenate([machine_sound(rng, 1.0) for _ in range(int(seconds))])
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    list(vae.score_windows(blocks[:20]))  # warm up
    start = time.perf_counter()
    n = sum(1 for _ in vae.score_windows(blocks))
    wall = time.perf_counter() - start
    return (n * vae.frontend.seconds) / wall


def measure(work: Path, *, quick: bool) -> dict:
    """Everything in the module docstring, into one dict."""
    from vae_edge.runtime.audio_vae import AudioVAE

    epochs = 15 if quick else 40
    data = work / "machine"
    write_machine(data, normal=160 if quick else 320, faulty=30 if quick else 60, seed=0)
    test = {k: _folder_pcm(data / "test" / k) for k in ("normal", *FAULTS)}
    results: dict = {"task": {"train_clips": len(list((data / "train").glob("*.wav"))), **{f"test_{k}": len(v) for k, v in test.items()}, "seconds_per_clip": 1.0}}
    models = {}
    for arch in ("conv", "conv1d"):
        model = work / arch / "model.pt"
        started = time.perf_counter()
        _run(_tool("vae-train"), "--data", f"audio:{data / 'train'}", "--arch", arch, "--latent", "16", "--epochs", str(epochs), "--batch-size", "32",
             "--iw-samples", "100", "--quiet", "--seed", "0", "--out", str(model))
        train_s = time.perf_counter() - started
        _run(_tool("vae-export"), str(model), "--out", str(work / arch / "bundle"), "--quantize", "int8-static", "--no-latency")
        metrics = json.loads((work / arch / "model.metrics.json").read_text())["metrics"]
        models[arch] = work / arch / "bundle"
        row: dict = {"train_seconds": round(train_s, 1), "epochs": epochs, "test_iwae_nll": metrics.get("test_iwae_nll"), "test_elbo": metrics.get("test_elbo")}
        for precision in ("fp32", "int8-static"):
            vae = AudioVAE.load(models[arch], precision=precision, threads=1)
            scores = {k: vae.anomaly_score(v) for k, v in test.items()}
            feats, recon = vae.features(test["normal"]), vae.reconstruct(test["normal"])
            sound = vae.to_pcm(recon[:16], iterations=32)
            row[precision] = {
                "auc_all": auc(scores["normal"], np.concatenate([scores[f] for f in FAULTS])),
                **{f"auc_{f}": auc(scores["normal"], scores[f]) for f in FAULTS},
                "neg_elbo_normal": float(scores["normal"].mean()),
                "lsd_db_reconstruction": lsd_db(feats, recon),
                "lsd_db_griffin_lim": lsd_db(feats[:16], vae.features(sound)),
                "bytes": vae.manifest["variants"][precision]["bytes"],
                "real_time_factor_1_thread": real_time_factor(vae, seconds=20 if quick else 60),
            }
        results[arch] = row
    # The baseline on the same features (the VAE bundle's own front end, so the input is identical).
    vae = AudioVAE.load(models["conv"], threads=1)
    train_feats = vae.features(_folder_pcm(data / "train"))
    started = time.perf_counter()
    baseline = dcase_baseline(train_feats, epochs=epochs)
    b_scores = {k: baseline(vae.features(v)) for k, v in test.items()}
    results["dcase_baseline"] = {
        "train_seconds": round(time.perf_counter() - started, 1), "epochs": epochs,
        "auc_all": auc(b_scores["normal"], np.concatenate([b_scores[f] for f in FAULTS])),
        **{f"auc_{f}": auc(b_scores["normal"], b_scores[f]) for f in FAULTS},
    }
    return results


def report(r: dict) -> str:
    """The results as Markdown tables."""
    lines = [f"Synthetic machine task: {r['task']['train_clips']} normal training clips of 1 s; held out {r['task']['test_normal']} normal and "
             + ", ".join(f"{r['task'][f'test_{f}']} {f}" for f in FAULTS) + ".", "",
             "| model | variant | AUC all | " + " | ".join(f"AUC {f}" for f in FAULTS) + " | test IWAE NLL (nats/clip) | LSD recon (dB) | LSD Griffin-Lim (dB) | live RTF, 1 thread | bytes |",
             "|---|---|---|" + "---|" * len(FAULTS) + "---|---|---|---|---|"]
    for arch in ("conv", "conv1d"):
        for precision in ("fp32", "int8-static"):
            v = r[arch][precision]
            nll = f"{r[arch]['test_iwae_nll']:.1f}" if precision == "fp32" else "—"
            lines.append(f"| VAE {arch} | {precision} | {v['auc_all']:.3f} | " + " | ".join(f"{v[f'auc_{f}']:.3f}" for f in FAULTS)
                         + f" | {nll} | {v['lsd_db_reconstruction']:.2f} | {v['lsd_db_griffin_lim']:.2f} | {v['real_time_factor_1_thread']:.0f}x | {v['bytes']:,} |")
    b = r["dcase_baseline"]
    lines.append(f"| DCASE-style AE (5 frames, MSE) | fp32 (PyTorch) | {b['auc_all']:.3f} | " + " | ".join(f"{b[f'auc_{f}']:.3f}" for f in FAULTS) + " | — | — | — | — | — |")
    return "\n".join(lines)


def _machine() -> dict:
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "load_average_1_5_15min": list(os.getloadavg()), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (about a minute)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--work", type=Path, default=None, help="folder for data, models and bundles (default: a temporary one)")
    args = parser.parse_args(argv)
    machine = _machine()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.work or Path(tmp), quick=args.quick)
    machine["load_average_after"] = list(os.getloadavg())
    if args.json is not None:
        from vae_edge.runtime.files import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps({"machine": machine, "results": results}, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
    print(f"{machine['date']}  {machine['cpu']}, {machine['cores']} cores, load {machine['load_average_1_5_15min'][0]:.2f} before, {machine['load_average_after'][0]:.2f} after")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
