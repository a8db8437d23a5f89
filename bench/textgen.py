"""`python -m bench.textgen MODEL.pt BUNDLE`: text generation at batch 1, one thread, per generated line:
PyTorch eager against the runtime's fp32 and int8 ``sample(1, seed=i)``, interleaved in blocks so that
the load of a shared machine falls on all three alike. Prints Markdown, writes --json.

Both sides run the same loop (one decoder step per character, a draw from softmax(logits / T), stop at
<eos> or the model's max length) on the same z (the runtime generator's normals for seed i). Time is
thread CPU time (``time.thread_time``), the median over blocks; wall clock is kept beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vae_edge.models import load_model
from vae_edge.models.text import BOS, EOS, PAD
from vae_edge.runtime.benchmark import machine_info
from vae_edge.runtime.rng import generator
from vae_edge.runtime.text import TextVAE


@torch.no_grad()
def torch_generate(model, z: torch.Tensor, max_len: int, g: torch.Generator, temperature: float = 1.0) -> list[int]:
    """PyTorch eager, batch 1: the loop the runtime runs, one decoder step per character, no_grad."""
    token = torch.full((1,), BOS, dtype=torch.long)
    state = torch.zeros(1, model.config.hidden_dim)
    ids = []
    for _ in range(max_len):
        logits, state = model.decoder.step(z, token, state)
        logits[:, [PAD, BOS]] = -float("inf")
        token = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g)[:, 0]
        if int(token) == EOS:
            break
        ids.append(int(token))
    return ids


def speed(model_pt: Path, bundle: Path, *, blocks: int = 12, block: int = 25, temperature: float = 1.0) -> dict:
    """Seconds per generated line at batch 1, one thread each: PyTorch eager, runtime fp32 and int8,
    interleaved block by block (block b: seeds b x block ...); medians over blocks of CPU and wall time."""
    torch.set_num_threads(1)
    model = load_model(model_pt).eval()
    max_len = model.config.max_len
    vaes = {p: TextVAE.load(bundle, precision=p, threads=1) for p in ("fp32", "int8")}
    zs = [torch.from_numpy(generator(i).standard_normal((1, model.config.latent_dim)).astype(np.float32)) for i in range(blocks * block)]
    g = torch.Generator().manual_seed(0)

    def run_torch(seeds: range) -> int:
        return sum(len(torch_generate(model, zs[i], max_len, g, temperature)) for i in seeds)

    def run_runtime(vae: TextVAE, seeds: range) -> int:
        return sum(len(vae.sample(1, seed=i, temperature=temperature)[0]) for i in seeds)

    sides = {"pytorch": run_torch, "fp32": lambda s: run_runtime(vaes["fp32"], s), "int8": lambda s: run_runtime(vaes["int8"], s)}
    for fn in sides.values():  # warm-up: first calls allocate and bind
        fn(range(3))
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    wall: dict[str, list[float]] = {k: [] for k in sides}
    chars: dict[str, int] = dict.fromkeys(sides, 0)
    load_start = os.getloadavg()
    for b in range(blocks):
        seeds = range(b * block, (b + 1) * block)
        order = list(sides)[b % 3:] + list(sides)[: b % 3]  # who goes first rotates
        for name in order:
            c, w = time.thread_time(), time.perf_counter()
            chars[name] += sides[name](seeds)
            cpu[name].append((time.thread_time() - c) / block)
            wall[name].append((time.perf_counter() - w) / block)
    lines = blocks * block
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": {**machine_info(), "load_average_at_start": list(load_start), "load_average_at_end": list(os.getloadavg())},
           "settings": {"blocks": blocks, "block": block, "temperature": temperature, "max_len": max_len}}
    for name in sides:
        out[name] = {"cpu_s_per_line": statistics.median(cpu[name]), "wall_s_per_line": statistics.median(wall[name]),
                     "cpu_s_per_line_range": [min(cpu[name]), max(cpu[name])], "chars_per_line": chars[name] / lines}
    for name in ("fp32", "int8"):
        out[name]["speedup_cpu"] = out["pytorch"]["cpu_s_per_line"] / out[name]["cpu_s_per_line"]
        out[name]["speedup_wall"] = out["pytorch"]["wall_s_per_line"] / out[name]["wall_s_per_line"]
        # per block, the ratio of the same block's figures: the load a block saw falls on both sides
        out[name]["speedup_cpu_blocks"] = [p / r for p, r in zip(cpu["pytorch"], cpu[name])]
    return out


def report(r: dict) -> str:
    m = r["machine"]
    rows = [f"{r['date']}, {m.get('cpu')}, {m.get('cores')} cores, load {m['load_average_at_start'][0]:.1f} at start, "
            f"{m['load_average_at_end'][0]:.1f} at end; {r['settings']['blocks']} blocks of {r['settings']['block']} lines, T = {r['settings']['temperature']}",
            "", "| batch 1, 1 thread | ms CPU per line (median; range) | ms wall per line | chars per line | vs PyTorch eager, CPU (blocks: min-max) | wall |",
            "|---|---|---|---|---|---|"]
    for name in ("pytorch", "fp32", "int8"):
        e = r[name]
        lo, hi = e["cpu_s_per_line_range"]
        ratio = "1" if name == "pytorch" else f"{e['speedup_cpu']:.1f}x ({min(e['speedup_cpu_blocks']):.1f}-{max(e['speedup_cpu_blocks']):.1f})"
        rows.append(f"| {name} | {e['cpu_s_per_line'] * 1e3:.3f} ({lo * 1e3:.3f}-{hi * 1e3:.3f}) | {e['wall_s_per_line'] * 1e3:.3f} | "
                    f"{e['chars_per_line']:.2f} | {ratio} | {e.get('speedup_wall', 1.0):.1f}x |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="the text model.pt the bundle was exported from")
    p.add_argument("bundle", type=Path)
    p.add_argument("--blocks", type=int, default=12)
    p.add_argument("--block", type=int, default=25, help="lines per block")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args()
    result = speed(args.model, args.bundle, blocks=args.blocks, block=args.block, temperature=args.temperature)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(report(result))


if __name__ == "__main__":
    main()
