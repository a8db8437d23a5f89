"""vae-train against the reference PyTorch VAE (bench/reference_vae.py) on the digits, side by side:
same split, MLP 64-400-8, Adam 1e-3, batch 64, the same epochs; test ELBO, test IWAE NLL (K = 1000)
and the median epoch time of each, per seed. Seeds alternate between the two so machine load hits both.

    python bench/trainer_vs_reference.py --epochs 100 --seeds 0 1 2
    python bench/trainer_vs_reference.py --epochs 10 --seeds 0 1 2 3 4 --iw-samples 10 --threads 1   # epoch times
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
from pathlib import Path


def _reference():
    spec = importlib.util.spec_from_file_location("reference_vae", Path(__file__).with_name("reference_vae.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours(epochs: int, seed: int, k: int) -> dict:
    from vae_edge.models import VAEConfig
    from vae_edge.trainer import TrainConfig, load_data, train

    data = load_data("digits")
    result = train(VAEConfig(input_shape=data.shape, latent_dim=8, hidden_dims=(400,)), data, TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=seed, iw_samples=k, quiet=True))
    m = result.metrics
    return {"trainer": "vae-train", "seed": seed, "epochs": epochs, "test_elbo": m["test_elbo"], "test_iwae_nll": m["test_iwae_nll"], "epoch_seconds": m["epoch_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iw-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for both (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    reference = _reference()
    rows = []
    for seed in args.seeds:
        rows.append(ours(args.epochs, seed, args.iw_samples))
        rows.append(reference.run(args.epochs, seed, k=args.iw_samples))
        for row in rows[-2:]:
            print(json.dumps(row), flush=True)
    print(f"\n| trainer | test IWAE NLL (K={args.iw_samples}), nats | test ELBO, nats | ms/epoch (median) |")
    print("|---|---|---|---|")
    for name in ("vae-train", "reference (pytorch/examples style)"):
        mine = [r for r in rows if r["trainer"] == name]
        nll = ", ".join(f"{r['test_iwae_nll']:.2f}" for r in mine)
        elbo = ", ".join(f"{r['test_elbo']:.2f}" for r in mine)
        ms = statistics.median(r["epoch_seconds"] for r in mine) * 1000
        print(f"| {name} | {nll} (mean {statistics.mean(r['test_iwae_nll'] for r in mine):.2f}) | {elbo} | {ms:.0f} |")


if __name__ == "__main__":
    main()
