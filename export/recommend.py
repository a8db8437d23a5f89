"""`--quantize auto`: the recommended variant of each graph, timed on this machine (or, untimed, by a fixed preference).

Every graph file of every variant that holds its gate is timed alone through onnxruntime, with the
runtime's own session options (runtime/sessions.py, one intra-op thread) and interleaved rounds
(runtime/benchmark.py), at batch 1 and at a bulk batch. A graph's candidates are ranked by their time
relative to fp32's, the worse of the two batches; within ``TIE`` of the fastest the smaller file wins.
A candidate slower than fp32 by more than ``TIE`` at either batch is never recommended. The pairs are
then judged, best first, by the accuracy gate's own figure, and the first pair that holds becomes the
bundle's ``auto`` variant (``VAE.load(precision="auto")``); the manifest's ``recommended`` section
keeps every figure. Untimed (`vae-export --no-latency`), ``UNTIMED_PREFERENCE`` ranks every graph the
same way, so a byte-stable bundle's choice does not hang on timing noise; ``basis`` records which.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vae_edge.runtime import contract
from vae_edge.runtime.benchmark import Effort, measure
from vae_edge.runtime.contract import BASE_VARIANT, DECODER, ENCODER, GraphSpec
from vae_edge.runtime.sessions import session_options

from .search import Judge

log = logging.getLogger(__name__)

BATCHES = (1, 64)  # batch 1 (one sample on a device) and a bulk batch
# Candidates within this fraction of each other are a tie (timing noise on a shared machine is of
# this order); ties go to the smaller file.
TIE = 0.05
EFFORT = Effort(rounds=5, round_seconds=0.05, warmup_seconds=0.02, max_calls=400)
# Untimed (`--no-latency`), best first: timings differ run to run, so a byte-stable bundle cannot rest on them.
UNTIMED_PREFERENCE = ("int8-weights", BASE_VARIANT)


def _open(path: Path, variant: str) -> ort.InferenceSession:
    options = session_options(1)
    for key, value in contract.SESSION_CONFIG.get(variant, {}).items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def time_candidates(paths: Mapping[str, Path], spec: GraphSpec, feeds: Mapping[int, np.ndarray], effort: Effort = EFFORT) -> dict[str, dict[int, float]]:
    """Median milliseconds per call of each variant's graph file at each batch, interleaved."""
    sessions = {variant: _open(path, variant) for variant, path in paths.items()}
    name = spec.inputs[0]
    figures: dict[str, dict[int, float]] = {v: {} for v in paths}
    for batch, feed in feeds.items():
        calls = {v: (lambda s=s, f=feed: s.run(None, {name: f})) for v, s in sessions.items()}
        for variant, timing in measure(calls, effort).items():
            figures[variant][batch] = timing.median_s * 1e3
    return figures


def _feeds(spec: GraphSpec, sizes: Mapping[str, list[int]]) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    ins, _ = spec.per_sample(sizes)
    # Model space: standard normal latents, and inputs in [0, 1] (what the encoder sees after preprocessing).
    draw = rng.standard_normal if spec is DECODER else rng.random
    return {b: draw((b, *ins[0])).astype(np.float32) for b in BATCHES}


def recommend(folder: Path, specs: Sequence[GraphSpec], variants: Mapping[str, dict], sizes: Mapping[str, list[int]], judge: Judge,
              *, effort: Effort = EFFORT, timed: bool = True) -> tuple[dict, dict, list[str]]:
    """Pick per graph among ``variants`` (those that hold their gate): timed, or by ``UNTIMED_PREFERENCE``.

    Args:
        timed: time every candidate on this machine; False (`vae-export --no-latency`): nothing is
            timed and the fixed preference decides, so the same model gives the same manifest.

    Returns:
        (the manifest's ``recommended`` section, the ``auto`` variant's entry, report lines).
    """
    if timed:
        section, ranked, lines = _rank_timed(folder, specs, variants, sizes, effort)
    else:
        section, ranked, lines = _rank_fixed(folder, specs, variants)
    return _choose(folder, specs, variants, judge, section, ranked, lines)


def _rank_timed(folder: Path, specs: Sequence[GraphSpec], variants: Mapping[str, dict], sizes: Mapping[str, list[int]],
                effort: Effort) -> tuple[dict, dict[str, list[str]], list[str]]:
    section: dict = {"basis": "timed",
                     "rule": (f"per graph: the fastest relative to fp32 at the worse of batch {BATCHES[0]} and batch {BATCHES[1]} "
                              f"(one thread), within {TIE:.0%} the smaller file; never slower than fp32 by more than {TIE:.0%}; "
                              "then the fastest pair that holds the accuracy gate"), "graphs": {}}
    lines: list[str] = []
    ranked: dict[str, list[str]] = {}
    for spec in specs:
        paths = {v: folder / entry[spec.name] for v, entry in variants.items()}
        figures = time_candidates(paths, spec, _feeds(spec, sizes), effort)
        base = figures[BASE_VARIANT]
        rows = {}
        for v, per_batch in figures.items():
            ratios = {b: per_batch[b] / base[b] for b in BATCHES}
            rows[v] = {
                **{f"batch_{b}_ms": round(per_batch[b], 4) for b in BATCHES},
                **{f"batch_{b}_vs_fp32": round(ratios[b], 3) for b in BATCHES},
                "bytes": paths[v].stat().st_size,
                "eligible": max(ratios.values()) <= 1.0 + TIE,
                "_cost": max(ratios.values()),
            }
        eligible = [v for v in rows if rows[v]["eligible"]]
        order: list[str] = []
        pool = sorted(eligible, key=lambda v: rows[v]["_cost"])
        while pool:
            fastest = rows[pool[0]]["_cost"]
            ties = [v for v in pool if rows[v]["_cost"] <= fastest * (1.0 + TIE)]
            ties.sort(key=lambda v: (rows[v]["bytes"], rows[v]["_cost"]))
            order += ties
            pool = [v for v in pool if v not in ties]
        ranked[spec.name] = order
        for row in rows.values():
            del row["_cost"]
        section["graphs"][spec.name] = {
            "candidates": rows,
            "fastest_batch_1": min(rows, key=lambda v: rows[v][f"batch_{BATCHES[0]}_ms"]),
            f"fastest_batch_{BATCHES[1]}": min(rows, key=lambda v: rows[v][f"batch_{BATCHES[1]}_ms"]),
            "order": order,
        }
        for v, row in rows.items():
            lines.append(line := f"  timing {spec.name:<8} {v:<13} batch 1 {row['batch_1_ms'] * 1e3:8.1f} us ({row['batch_1_vs_fp32']:.2f}x fp32), "
                         f"batch {BATCHES[1]} {row[f'batch_{BATCHES[1]}_ms'] * 1e3:8.1f} us ({row[f'batch_{BATCHES[1]}_vs_fp32']:.2f}x), {row['bytes']:,} bytes")
            log.info(line)
    return section, ranked, lines


def _rank_fixed(folder: Path, specs: Sequence[GraphSpec], variants: Mapping[str, dict]) -> tuple[dict, dict[str, list[str]], list[str]]:
    section: dict = {"basis": "fixed",
                     "rule": (f"not timed (--no-latency): per graph the first of {', '.join(UNTIMED_PREFERENCE)} that holds its gate "
                              "(int8-weights runs fp32's arithmetic on weights dequantized at load: fp32's speed in fewer bytes, "
                              "so it comes first only where its file is smaller, not on models whose quantization parameters outweigh their weights; "
                              "the speed of the other variants depends on the model and the machine, so they need timing); "
                              "then the first pair in that order that holds the accuracy gate"), "graphs": {}}
    ranked: dict[str, list[str]] = {}
    for spec in specs:
        size = {v: (folder / entry[spec.name]).stat().st_size for v, entry in variants.items()}
        order = sorted((v for v in UNTIMED_PREFERENCE if v in variants), key=lambda v: (v != BASE_VARIANT and size[v] >= size.get(BASE_VARIANT, size[v] + 1)))
        ranked[spec.name] = order
        section["graphs"][spec.name] = {
            "candidates": {v: {"bytes": size[v], "eligible": v in order} for v, entry in variants.items()},
            "order": order,
        }
    return section, ranked, []


def _choose(folder: Path, specs: Sequence[GraphSpec], variants: Mapping[str, dict], judge: Judge, section: dict,
            ranked: Mapping[str, list[str]], lines: list[str]) -> tuple[dict, dict, list[str]]:
    """The first pair, best ranks first (then fewer bytes), that holds the accuracy gate end to end."""
    names = [spec.name for spec in specs]
    pairs = sorted(itertools.product(*(enumerate(ranked[n]) for n in names)), key=lambda p: (sum(i for i, _ in p), sum(section["graphs"][n]["candidates"][v]["bytes"] for n, (_, v) in zip(names, p))))
    how = "timed per graph on the exporting machine" if section["basis"] == "timed" else "chosen per graph by a fixed preference (not timed)"
    for pair in pairs:
        chosen = {n: v for n, (_, v) in zip(names, pair)}
        files = {n: folder / variants[v][n] for n, v in chosen.items()}
        change = judge(files[ENCODER.name], files[DECODER.name])
        # The fp32 pair is the reference itself (held to the fp32 gate, not --tolerance): it holds even
        # where float rounding (~1e-9) exceeds a --tolerance of 0.
        holds = set(chosen.values()) == {BASE_VARIANT} or (bool(np.isfinite(change)) and abs(change) <= judge.limit)
        log.info("  recommend: %s: reconstruction NLL %+.2f %% (limit %g %%)%s", ", ".join(f"{n} {v}" for n, v in chosen.items()), change * 100, judge.limit * 100, "" if holds else ", misses the gate")
        if holds:
            section["chosen"] = chosen
            section["recon_nll_rel_change"] = change
            for n, v in chosen.items():
                section["graphs"][n]["variant"] = v
            entry = {**{n: variants[v][n] for n, v in chosen.items()}, "from": chosen,
                     "method": f"recommended, {how}: " + ", ".join(f"{n} {v}" for n, v in chosen.items())}
            lines.append(f"  recommended ({contract.AUTO}, {section['basis']}): " + ", ".join(f"{n} {v}" for n, v in chosen.items()))
            log.info(lines[-1])
            return section, entry, lines
    raise AssertionError("the fp32 pair always holds")  # fp32 is a candidate of every graph and holds (checked by the gate)
