"""vae-train's defaults against the reference PyTorch VAE (bench/reference_vae.py), side by side on one
held-out split of the digits: test IWAE NLL (K = 1000), test ELBO and the median epoch time of each, per seed.

The split is the one a user with separate train and test files has: a fixed cut of scikit-learn's 1,797
digits into 1,437 training and 360 test images (seed `--cut-seed`, 2024 by default; another seed measures
whether a setting's gain holds on another cut), saved as .npy. vae-train gets the training file through
`npy:` with `--split 0.9,0.1,0` (all of it for train + validation, early stopping on the validation part)
and the test file as `--test-data`, with every other option at its default; the reference (64-400-8,
Adam 1e-3, batch 64, no validation) trains on all 1,437 for `--reference-epochs`. Seeds alternate between
the two so that machine load hits both. Each vae-train model is also exported (`vae-export`) and the
test IWAE NLL measured again through the runtime on its fp32 and int8 graphs (numpy + onnxruntime).

    python bench/trainer_vs_reference.py --seeds 0 1 2
    python bench/trainer_vs_reference.py --seeds 0 --vae-train-args "--epochs 20" --reference-epochs 20 --iw-samples 10   # a quick look
    python bench/trainer_vs_reference.py --seeds 0 --no-reference --cut-seed 7   # vae-train alone, on another cut of the digits
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TRAIN_SIZE = 1437  # of the 1,797 digits; the other 360 test
CUT_SEED = 2024


def _reference():
    spec = importlib.util.spec_from_file_location("reference_vae", Path(__file__).with_name("reference_vae.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_out_digits(folder: Path, cut_seed: int = CUT_SEED) -> tuple[Path, Path]:
    """A fixed 1,437 / 360 cut of the digits (grey levels 0..16, [n, 8, 8]), shuffled by ``cut_seed``, as train.npy and test.npy."""
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.float32)
    order = np.random.default_rng(cut_seed).permutation(len(x))
    paths = folder / "digits_train.npy", folder / "digits_test.npy"
    np.save(paths[0], x[order[:TRAIN_SIZE]])
    np.save(paths[1], x[order[TRAIN_SIZE:]])
    return paths


def ours(train: Path, test: Path, seed: int, k: int, extra: list[str], folder: Path) -> dict:
    """`vae-train` at its defaults (plus ``extra``) as a user runs it; its metrics file read back."""
    out = folder / f"seed{seed}" / "model.pt"
    command = [str(Path(sys.executable).with_name("vae-train")), "--data", f"npy:{train}", "--split", "0.9,0.1,0", "--test-data", f"npy:{test}",
               "--seed", str(seed), "--iw-samples", str(k), "--quiet", "--out", str(out), *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    m = json.loads(out.with_name("model.metrics.json").read_text())["metrics"]
    return {"trainer": "vae-train (defaults)", "seed": seed, "epochs": m["epochs"], "best_epoch": m["best_epoch"], "test_elbo": m["test_elbo"],
            "test_iwae_nll": m["test_iwae_nll"], "last_iwae_nll": last_epoch_iwae_nll(out, test, k), "epoch_seconds": m["epoch_seconds"],
            **exported(out, test, k)}


def last_epoch_iwae_nll(model: Path, test: Path, k: int) -> float:
    """The test IWAE NLL (K = ``k``, the trainer's estimator and seed) of the last epoch's weights, which
    model.pt carries for --resume beside the kept ones: the weight average where there is one, else the
    raw weights; the kept weights' figure when the last epoch is the one kept."""
    import torch

    from vae_edge.models.checkpoint import model_from_checkpoint, read_checkpoint
    from vae_edge.trainer.evaluation import evaluate_iwae

    ckpt = read_checkpoint(model)
    state = ckpt.get("train_state") or {}
    last = (state.get("weight_average") or {}).get("state_dict") or state.get("last_state_dict")
    net = model_from_checkpoint(ckpt, str(model))
    if last is not None:
        net.load_state_dict(last)
    pre = ckpt["data"]["preprocessing"]
    x = (np.load(test)[:, None] - np.asarray(pre["offset"], np.float32)) / np.asarray(pre["scale"], np.float32)
    return evaluate_iwae(net, torch.from_numpy(x.astype(np.float32)), k)


def bundle_iwae_nll(bundle: Path, x: np.ndarray, k: int, precision: str, *, seed: int = 0) -> float:
    """Mean importance-weighted NLL (nats) of ``x`` (data units) through a bundle's graphs: encoder for
    q(z|x), decoder for the Bernoulli p(x|z), the bundle's prior (``VAE.log_prior``: N(0, I) or a VampPrior);
    K samples each, in numpy."""
    from vae_edge.runtime import VAE

    vae = VAE.load(bundle, precision=precision, threads=1)
    xm = vae.normalize(x).reshape(len(x), -1)
    mu, logvar = vae.encode(x)
    rng = np.random.default_rng(seed)
    total = []
    for i in range(len(x)):
        eps = rng.standard_normal((k, mu.shape[1])).astype(np.float32)
        z = mu[i] + np.exp(0.5 * logvar[i]) * eps
        p = np.clip(vae.normalize(vae.decode(z)).reshape(k, -1).astype(np.float64), 1e-7, 1 - 1e-7)  # decode gives data units
        log_px = (xm[i] * np.log(p) + (1 - xm[i]) * np.log1p(-p)).sum(1)
        log_pz = vae.log_prior(z)
        log_q = -0.5 * (eps.astype(np.float64) ** 2 + logvar[i] + np.log(2 * np.pi)).sum(1)
        log_w = log_px + log_pz - log_q
        total.append(-(np.logaddexp.reduce(log_w) - np.log(k)))
    return float(np.mean(total))


def exported(model: Path, test: Path, k: int) -> dict:
    """Export ``model`` with vae-export's defaults (fp32 + int8) and measure the test IWAE NLL on both."""
    bundle = model.with_name("bundle")
    done = subprocess.run([str(Path(sys.executable).with_name("vae-export")), str(model), "--out", str(bundle), "--no-latency"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:  # a failed export gate is a finding to report beside the PyTorch figure, not a reason to lose the run
        return {"export_error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    x = np.load(test)[:, None]
    return {f"bundle_{p}_iwae_nll": bundle_iwae_nll(bundle, x, k, p) for p in ("fp32", "int8")}


def _non_negative(text: str) -> int:
    """An int >= 0 (numpy's seeds), else argparse's one-line usage error instead of numpy's traceback."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph: its first line ends mid-sentence
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds, one run of each trainer per seed (default: 0 1 2)")
    parser.add_argument("--reference-epochs", type=int, default=100, help="epochs of the reference VAE (default: 100)")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the test importance-weighted NLL (default: 1000)")
    parser.add_argument("--vae-train-args", default="", help="extra vae-train options, e.g. \"--epochs 20\" (default: none, its defaults)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (vae-train through OMP_NUM_THREADS)")
    parser.add_argument("--no-reference", action="store_true", help="vae-train only (comparing vae-train settings: one process per seed)")
    parser.add_argument("--cut-seed", type=_non_negative, default=CUT_SEED, help=f"seed of the 1,437 / 360 cut of the digits (default {CUT_SEED}, the cut the defaults were chosen on)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="write the data, models and bundles under DIR and keep them (default: a temporary folder)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    reference = _reference()
    rows = []
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vae-bench-") if args.keep is None else contextlib.nullcontext(str(args.keep)) as tmp:
        train, test = held_out_digits(Path(tmp), args.cut_seed)
        train_x, test_x = np.load(train) / 16.0, np.load(test) / 16.0
        for seed in args.seeds:
            rows.append(ours(train, test, seed, args.iw_samples, shlex.split(args.vae_train_args), Path(tmp)))
            if not args.no_reference:
                rows.append({**reference.run(args.reference_epochs, seed, k=args.iw_samples, train=train_x, test=test_x), "best_epoch": args.reference_epochs})
            for row in rows[-(1 if args.no_reference else 2):]:
                print(json.dumps(row), flush=True)
    print(f"\ncut of the digits: seed {args.cut_seed}")
    print(f"\n| trainer | test IWAE NLL (K={args.iw_samples}), nats, per seed | mean | last epoch's | test ELBO | epochs (kept) | ms/epoch (median) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("vae-train (defaults)", "reference (pytorch/examples style)"):
        mine = [r for r in rows if r["trainer"] == name]
        if not mine:
            continue
        nll = " / ".join(f"{r['test_iwae_nll']:.2f}" for r in mine)
        elbo = " / ".join(f"{r['test_elbo']:.2f}" for r in mine)
        epochs = " / ".join(f"{r['epochs']} ({r['best_epoch']})" for r in mine)
        ms = statistics.median(r["epoch_seconds"] for r in mine) * 1000
        last = " / ".join(f"{r['last_iwae_nll']:.2f}" if "last_iwae_nll" in r else "-" for r in mine)
        print(f"| {name} | {nll} | {statistics.mean(r['test_iwae_nll'] for r in mine):.2f} | {last} | {elbo} | {epochs} | {ms:.0f} |")
    for r in rows:
        if "export_error" in r:
            print(f"\nseed {r['seed']}: vae-export failed: {r['export_error']}")
    mine = [r for r in rows if "bundle_fp32_iwae_nll" in r]
    print(f"\nvae-train's exported bundles, test IWAE NLL (K={args.iw_samples}) through the runtime, per seed:")
    for p in ("fp32", "int8") if mine else ():
        values = [r[f"bundle_{p}_iwae_nll"] for r in mine]
        print(f"  {p}: {' / '.join(f'{v:.2f}' for v in values)} (mean {statistics.mean(values):.2f})")


if __name__ == "__main__":
    main()
