"""The fallback search: when a quantized variant misses its accuracy gate, find one that holds it.

Steps, each judged by the gate's own figure (validate.recon_change: the relative change of the mean
reconstruction NLL through the variant's encoder and decoder), stopping at the first that holds:

1. the variant as configured;
2. static int8 only: onnxruntime's other calibration methods, Percentile then Entropy (the best of the
   three is kept for what follows);
3. the quantizable nodes (weights of Conv/Gemm/MatMul) of both graphs ranked by the damage each does
   alone (that node quantized, everything else float: its measured effect on the gate), then kept in
   float one at a time, most damaging first (onnxruntime's ``nodes_to_exclude``).

All within a time budget per variant. Nothing is loosened: the limit is the export's tolerance, and the
manifest records every step's figure (``search`` in the variant's entry). The search logs each step at
INFO as it goes; `vae-export` shows them.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vae_edge.runtime import contract
from vae_edge.runtime.contract import DECODER, ENCODER, GraphSpec

from . import quantize as quantizing
from .errors import step as failing_step
from .graphs import check_graph
from .options import DEFAULT_BUDGET_S
from .quantize import VARIANTS, QuantizeConfig, prepared_nodes
from .validate import Reference, recon_change

log = logging.getLogger(__name__)

# Calibration methods tried after MinMax for a static variant, in this order.
CALIBRATION_ORDER = ("minmax", "percentile", "entropy")
CALIBRATION_NAMES = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


@dataclass
class Step:
    """One candidate the search built and judged."""

    what: str
    change: float  # relative change of the mean reconstruction NLL (the gate's figure)
    limit: float
    seconds: float
    configs: dict = field(default_factory=dict, repr=False)  # per graph, the configs judged

    @property
    def holds(self) -> bool:
        return bool(np.isfinite(self.change)) and abs(self.change) <= self.limit

    def to_dict(self, timed: bool = True) -> dict:
        return {"step": self.what, "recon_nll_rel_change": self.change, "limit": self.limit, "holds": self.holds, **({"seconds": round(self.seconds, 3)} if timed else {})}

    def line(self, variant: str) -> str:
        mark = "✓" if self.holds else "✗"
        return f"  search {variant}: {mark} {self.what}: reconstruction NLL {self.change * 100:+.3g} % (limit {self.limit * 100:g} %)"


@dataclass
class SearchResult:
    """Where the search for one variant ended: the configs per graph of its best candidate."""

    variant: str
    configs: dict[str, QuantizeConfig]
    steps: list[Step] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    budget_s: float = DEFAULT_BUDGET_S
    stopped: str = ""  # why the search ended without a variant that holds

    @property
    def best(self) -> Step:
        return min(self.steps, key=lambda s: abs(s.change) if np.isfinite(s.change) else np.inf)

    @property
    def holds(self) -> bool:
        return bool(self.steps) and self.steps[-1].holds

    def summary(self, timed: bool = True) -> str:
        """One line naming the best candidate and its figures (for an export that fails, or leaves it out)."""
        best = self.best
        took = f" in {self.seconds:.1f} s" if timed else ""
        return (f"best candidate found: {best.what}: reconstruction NLL {best.change * 100:+.3g} % (limit {best.limit * 100:g} %); "
                f"{len(self.steps)} step(s){took} (budget {self.budget_s:g} s){'; ' + self.stopped if self.stopped else ''}")

    def to_manifest(self, timed: bool = True) -> dict:
        """The variant's ``search`` entry: what was kept in float, the calibration, every step.

        Args:
            timed: record seconds (off for a byte-stable bundle, `vae-export --no-latency`).
        """
        first = next(iter(self.configs.values()))
        return {
            "holds": self.holds,
            "kept_in_float": {graph: list(c.nodes_to_exclude) for graph, c in self.configs.items()},
            **({"calibration": first.calibrate} if first.method == "static" else {}),
            "steps": [s.to_dict(timed) for s in self.steps],
            **({"ranking": self.ranking} if self.ranking else {}),
            **({"seconds": round(self.seconds, 2)} if timed else {}),
            "budget_s": self.budget_s,
            **({"stopped": self.stopped} if self.stopped else {}),
        }


class Judge:
    """The gate's figure for a pair of graph files: each graph's session is cached by path."""

    def __init__(self, ref: Reference, limit: float):
        self.ref = ref
        self.limit = limit
        self._mu_cache: dict[str, np.ndarray] = {}

    def __call__(self, encoder: Path, decoder: Path) -> float:
        mu = self._mu_cache.get(str(encoder))
        if mu is None:
            mu = _session(encoder).run(None, {ENCODER.inputs[0]: self.ref.x})[0]
            self._mu_cache[str(encoder)] = mu
        with np.errstate(all="ignore"):
            change, _ = recon_change(_session(decoder), mu, self.ref)
        return change


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def search(folder: Path, specs: Sequence[GraphSpec], variant: str, feeds: Mapping[str, list[dict]], judge: Judge, *,
           budget_s: float = DEFAULT_BUDGET_S, search_on: bool = True) -> SearchResult:
    """Write ``variant``'s graphs into ``folder`` (beside the fp32 ones), searching as the module says
    until they hold the gate or the budget is spent; the files left are those of the best candidate.

    Args:
        feeds: calibration feeds per graph (static variants).
        judge: the gate's figure for an (encoder, decoder) pair of files, and its limit.
        search_on: False: build the variant as configured and judge it only (one step).

    Raises:
        ExportError: a quantizer or the checker failed, naming the step.
    """
    base = VARIANTS[variant]
    start = time.monotonic()
    fp32 = {spec.name: folder / spec.filename() for spec in specs}
    result = SearchResult(variant, {spec.name: base for spec in specs}, budget_s=budget_s)
    with tempfile.TemporaryDirectory(prefix=f"search-{variant}-") as tmp:
        work = Path(tmp)
        built: dict[tuple[str, QuantizeConfig], Path] = {}

        def build(graph: str, config: QuantizeConfig) -> Path:
            key = (graph, config)
            if key not in built:
                spec = next(s for s in specs if s.name == graph)
                path = work / f"{graph}.{len(built)}.onnx"
                with failing_step(f"quantizing {spec.filename()} to {variant}"):
                    quantizing.quantize(fp32[graph], path, config=config, calibration=feeds.get(graph) if config.needs_calibration else None)
                with failing_step(f"onnx.checker on {spec.filename(variant)}"):
                    check_graph(path)
                built[key] = path
            return built[key]

        def pair(configs: Mapping[str, QuantizeConfig | None]) -> tuple[Path, Path]:
            return tuple(build(g, c) if c is not None else fp32[g] for g, c in ((ENCODER.name, configs.get(ENCODER.name)), (DECODER.name, configs.get(DECODER.name))))

        def attempt(what: str, configs: dict[str, QuantizeConfig]) -> Step:
            t0 = time.monotonic()
            files = pair(configs)
            with failing_step(f"loading the {variant} graphs in onnxruntime"):
                change = judge(*files)
            step = Step(what, change, judge.limit, 0.0, dict(configs))
            step.seconds = time.monotonic() - t0
            result.steps.append(step)
            log.info(step.line(variant))
            return step

        def out_of_time() -> bool:
            return time.monotonic() - start > budget_s

        current = dict(result.configs)
        done = attempt(_describe(base, "as configured"), current).holds or not search_on
        if not done and base.method == "static":
            tried = {"minmax": (result.steps[-1], current)}
            for method in CALIBRATION_ORDER[1:]:
                if out_of_time():
                    break
                configs = {g: dataclasses.replace(c, calibrate=method) for g, c in current.items()}
                tried[method] = (attempt(f"{CALIBRATION_NAMES[method]} calibration", configs), configs)
                if tried[method][0].holds:
                    current, done = configs, True
                    break
            if not done:
                current = min(tried.values(), key=lambda t: abs(t[0].change) if np.isfinite(t[0].change) else np.inf)[1]
        if not done and not out_of_time():
            ranking = _rank(specs, current, fp32, judge, build, out_of_time)
            result.ranking = [{"graph": g, "node": n, "recon_nll_rel_change_alone": c} for g, n, c in ranking]
            kept: dict[str, list[str]] = {spec.name: list(current[spec.name].nodes_to_exclude) for spec in specs}
            for graph, node, _ in ranking:
                if out_of_time():
                    break
                kept[graph].append(node)
                current = {**current, graph: dataclasses.replace(current[graph], nodes_to_exclude=tuple(kept[graph]))}
                if attempt(f"keep {graph}/{node} in float32 ({sum(map(len, kept.values()))} kept)", current).holds:
                    done = True
                    break
        if not result.holds:
            result.stopped = "search off (--no-search)" if not search_on else "time budget spent" if out_of_time() else "every quantizable node tried"
            # The files left are the best candidate's, for the failure message and the report.
            current = result.best.configs
        result.configs = current
        result.seconds = time.monotonic() - start
        for spec in specs:
            shutil.copyfile(build(spec.name, current[spec.name]), folder / spec.filename(variant))
    return result


def _rank(specs, current, fp32, judge, build, out_of_time) -> list[tuple[str, str, float]]:
    """Quantizable nodes of every graph, most damaging first: the gate's figure with that node alone
    quantized (the rest of its graph, and the other graph, in float32)."""
    scored: list[tuple[str, str, float]] = []
    for spec in specs:
        config = current[spec.name]
        nodes = [n for n in prepared_nodes(fp32[spec.name], config) if n not in config.nodes_to_exclude]
        if len(nodes) == 1:  # nothing to compare: its own damage is the graph's
            scored.append((spec.name, nodes[0], float("nan")))
            continue
        for node in nodes:
            if out_of_time():
                return sorted(scored, key=_damage, reverse=True)
            alone = dataclasses.replace(config, nodes_to_exclude=tuple(n for n in nodes if n != node) + config.nodes_to_exclude)
            path = build(spec.name, alone)
            files = {s.name: fp32[s.name] for s in specs} | {spec.name: path}
            with failing_step(f"loading {path.name} in onnxruntime"):
                change = judge(files[ENCODER.name], files[DECODER.name])
            scored.append((spec.name, node, change))
            log.info("  search: %s/%s alone: reconstruction NLL %+.2f %%", spec.name, node, change * 100)
    return sorted(scored, key=_damage, reverse=True)


def _damage(item: tuple[str, str, float]) -> float:
    change = item[2]
    return abs(change) if np.isfinite(change) else np.inf


def _describe(config: QuantizeConfig, what: str) -> str:
    return f"{what} ({CALIBRATION_NAMES[config.calibrate]} calibration)" if config.method == "static" else what


def variant_entry(specs: Sequence[GraphSpec], variant: str, result: SearchResult, *, timed: bool = True) -> dict:
    """The manifest's entry for a variant the search built: its graph files, method, and the search."""
    # Every graph of a variant states one method (its calibration is shared; what each keeps in float is
    # in the search entry).
    method = next(iter(result.configs.values())).describe()
    return {**contract.variant_files(specs, variant), "method": method, "search": result.to_manifest(timed)}
