"""`python -m bench [--quick] [--threads N]`: build the bundles it needs, measure, print, write results.json."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import click

from vae_edge.runtime.clitools import output_path, run_cli

from .sidebyside import DEFAULT_PYTHON


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Shorter rounds and fewer cold starts: under a minute once the bundles are built.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="Threads for onnxruntime, PyTorch and numpy alike (default: one per core).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench/results.json"), show_default=True, callback=output_path(".json"))
@click.option("--build", type=click.Path(file_okay=False, path_type=Path), default=Path("build/bench"), show_default=True, help="Where the benchmark bundles are built and kept.")
@click.option("--litert-python", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PYTHON, show_default=True, help="Interpreter of the optional LiteRT environment (`make bench` builds it); missing: the LiteRT table is skipped.")
def cli(quick, threads, out, build, litert_python):
    """Side-by-side benchmarks: PyTorch eager against each bundle variant in onnxruntime, runtime overhead,
    matrix-multiply peak, cold start and memory. Prints Markdown tables; every figure goes to --out."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    from vae_edge.runtime.benchmark import FULL, QUICK, machine_info
    from vae_edge.runtime.files import atomic_write_bytes

    from . import child_env
    from .bundles import MODELS, ensure_bundle
    from .coldstart import cold_start
    from .report import tables, targets
    from .run import bench_model, blas_info
    from .sidebyside import joined_rows, litert_side_by_side

    started = time.perf_counter()
    threads = threads or os.cpu_count() or 1
    effort = QUICK if quick else FULL
    torch.set_num_threads(threads)
    busy = os.getloadavg()[0]
    if threads > 1 and busy > 0.5 * (os.cpu_count() or 1):
        # Measured at load 6-7 on 2 cores: PyTorch's batch-64 encode took 48 ms with 2 threads (OpenMP
        # threads spinning for a descheduled partner), 64 us with 1. Such figures measure the load.
        logging.warning("load average %.1f on %d cores: multi-threaded figures will mostly measure waiting; consider --threads 1", busy, os.cpu_count())
    built = {m.name: (m, *ensure_bundle(m, build)) for m in MODELS}
    result = {"machine": machine_info(), "threads": threads, "quick": quick}
    result["machine"].update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy_blas": blas_info(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), "openblas_coretype_in_environment": child_env().get("OPENBLAS_CORETYPE")})
    result["models"] = {name: bench_model(m, model_pt, bundle, threads=threads, effort=effort) for name, (m, model_pt, bundle) in built.items()}
    _, digits_pt, digits_bundle = built["digits-mlp"]
    litert = litert_side_by_side(digits_pt, digits_bundle, digits_pt.parent, python=litert_python, quick=quick)
    result["litert"] = litert if "skipped" in litert else litert | {"joined": joined_rows(litert, result["models"]["digits-mlp"])}
    result["cold_start"] = cold_start(3 if quick else 9)
    result["targets"] = targets(result)
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - started
    m = result["machine"]
    click.echo(f"{m['utc']}  {m['cpu']}, {m['cores']} cores; threads {threads} for onnxruntime, PyTorch {m['torch']} and numpy; "
               f"onnxruntime {m['onnxruntime']}; load average {m['load_average_1_5_15min'][0]:.1f} at start, {m['load_average_at_end'][0]:.1f} at end")
    click.echo("")
    for line in tables(result):
        click.echo(line)
    click.echo("")
    click.echo(f"~ marks a noisy figure (round medians differ by more than 10%). Took {result['seconds']:.0f} s; every figure in {out}")
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())


def main() -> None:
    """Entry point of `python -m bench`."""
    run_cli(cli, prog_name="python -m bench")
