"""LiteRT side by side: the digits MLP rebuilt in TensorFlow from the same weights, converted to .tflite
(float32, and int8 dynamic range), checked against the bundle's onnxruntime graphs, then timed
interleaved with this runtime and bare onnxruntime in one process, one thread.

It runs in its own optional environment (build/litert-venv: tensorflow-cpu, ai-edge-litert, onnxruntime
and this project without its dependencies; `make bench` builds it on first use), never in the project's:
LiteRT is a yardstick, not a dependency. PyTorch is not in that environment; bench/run.py times it
against the same runtime in the project's environment, and the table chains the two ratios.

    build/litert-venv/bin/python -m bench.litert --bundle B --weights W.npz --out R.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

# anomaly_score's bare onnxruntime rows run the bundle's score graph (bundles without one: runtime only)
RUNTIME, BARE, BOUND, LITERT, LITERT_INT8 = "runtime", "ort-run", "ort-iobinding", "litert-fp32", "litert-int8"
CASES = (("decode", 1), ("decode", 64), ("encode", 1), ("encode", 64), ("anomaly_score", 1), ("anomaly_score", 64))
REPEATS = 3  # whole interleaved measurements; the reported figure is the median of their medians
PARITY_ATOL = 1e-4  # LiteRT fp32 against onnxruntime fp32, probabilities and latents alike


def _tf_graphs(weights: dict[str, np.ndarray], config: dict):
    """(encoder, decoder) as tf.functions with a dynamic batch, computing what the PyTorch MLP computes.

    Raises:
        ValueError: not an MLP (only the MLP is rebuilt here).
    """
    import tensorflow as tf

    if config.get("arch") != "mlp":
        raise ValueError(f"LiteRT side by side rebuilds MLPs only, got arch {config.get('arch')!r}")
    shape, latent = list(config["input_shape"]), int(config["latent_dim"])
    size = int(np.prod(shape))

    def dense(prefix: str):
        # torch Linear stores weight as (out, in); y = x W^T + b
        return tf.constant(weights[f"{prefix}.weight"].T.copy()), tf.constant(weights[f"{prefix}.bias"])

    def stack(prefix: str):
        layers, i = [], 0
        while f"{prefix}.{i}.weight" in weights:
            layers.append(dense(f"{prefix}.{i}"))
            i += 2  # Linear, ReLU, Linear, ReLU, ...
        return layers

    enc_body, mu, logvar = stack("encoder.body"), dense("encoder.mu"), dense("encoder.logvar")
    dec_body, out = stack("decoder.body"), dense("decoder.out")
    sigmoid = config.get("likelihood", "bernoulli") == "bernoulli"

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="x")])
    def encoder(x):
        h = tf.reshape(x, [-1, size])
        for w, b in enc_body:
            h = tf.nn.relu(tf.matmul(h, w) + b)
        return tf.matmul(h, mu[0]) + mu[1], tf.matmul(h, logvar[0]) + logvar[1]

    @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="z")])
    def decoder(z):
        h = z
        for w, b in dec_body:
            h = tf.nn.relu(tf.matmul(h, w) + b)
        y = tf.matmul(h, out[0]) + out[1]
        return tf.reshape(tf.sigmoid(y) if sigmoid else y, [-1, *shape])

    return encoder, decoder


def to_tflite(fn, *, int8: bool) -> bytes:
    """One tf.function -> .tflite bytes; ``int8``: dynamic-range quantization (int8 weights, float activations)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
    return converter.convert()


class LiteRTGraph:
    """One .tflite graph with an interpreter per batch size (resizing per call would be the cost timed)."""

    def __init__(self, model: bytes, batches: tuple[int, ...], sample_shape: tuple[int, ...]):
        from ai_edge_litert.interpreter import Interpreter

        self.calls = {}
        for batch in batches:
            it = Interpreter(model_content=model, num_threads=1)
            inp = it.get_input_details()[0]
            it.resize_tensor_input(inp["index"], [batch, *sample_shape])
            it.allocate_tensors()
            outs = [d["index"] for d in sorted(it.get_output_details(), key=lambda d: d["name"])]
            self.calls[batch] = (it, inp["index"], outs)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        it, i, outs = self.calls[len(x)]
        it.set_tensor(i, x)
        it.invoke()
        return [it.get_tensor(o) for o in outs]  # get_tensor copies, as onnxruntime hands back new arrays


def _bound_call(session, feed_name: str, x: np.ndarray, outputs: list[str]):
    """The lowest-overhead bare onnxruntime call: inputs and outputs pre-bound (IOBinding), run through
    the C++ session with RunOptions that name gpu_graph_id (onnxruntime 1.32 otherwise raises and
    catches an exception inside every bound run)."""
    import onnxruntime as ort

    inner = session._sess
    binding = session.io_binding()
    binding.bind_cpu_input(feed_name, x)
    for name in outputs:
        binding.bind_output(name, "cpu")
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", "0")
    inner.run_with_iobinding(binding._iobinding, options)  # allocates the outputs once; reused after
    return lambda: inner.run_with_iobinding(binding._iobinding, options)


def run(bundle: Path, weights_path: Path, quick: bool) -> dict:
    import onnxruntime as ort
    import tensorflow as tf

    from vae_edge.runtime import VAE
    from vae_edge.runtime.benchmark import FULL, QUICK, bench_inputs, machine_info, measure

    tf.config.threading.set_intra_op_parallelism_threads(1)
    effort = QUICK if quick else FULL
    loaded = np.load(weights_path)
    config = json.loads(str(loaded["config.json"]))
    weights = {k: loaded[k] for k in loaded.files if k != "config.json"}
    encoder_fn, decoder_fn = _tf_graphs(weights, config)
    vae = VAE.load(bundle, threads=1)
    shape, latent = vae.shape, vae.latent_dim
    batches = tuple(sorted({b for _, b in CASES}))
    tflite = {name: {g: to_tflite(fn, int8=name == LITERT_INT8) for g, fn in (("encoder", encoder_fn), ("decoder", decoder_fn))} for name in (LITERT, LITERT_INT8)}
    lite = {name: {"encoder": LiteRTGraph(m["encoder"], batches, shape), "decoder": LiteRTGraph(m["decoder"], batches, (latent,))} for name, m in tflite.items()}
    parity = _parity(vae, lite[LITERT])
    rows = []
    for op, batch in CASES:
        x, z = bench_inputs(vae, batch)
        xm = vae.normalize(x).astype(np.float32)
        calls = {RUNTIME: {"decode": lambda: vae.decode(z), "encode": lambda: vae.encode(x), "anomaly_score": lambda: vae.anomaly_score(x)}[op]}
        graph = {"decode": "decoder", "encode": "encoder", "anomaly_score": "score"}[op]
        session = vae.session(graph) if graph in vae.manifest["variants"]["fp32"] else None
        arg = z if op == "decode" else xm
        if session is not None:
            feed = session.get_inputs()[0].name
            names = [o.name for o in session.get_outputs()]
            ro = ort.RunOptions()
            bare_feed = {feed: arg}
            calls[BARE] = lambda s=session._sess, f=bare_feed, n=names: s.run(n, f, ro)
            calls[BOUND] = _bound_call(session, feed, arg, names)
        if op != "anomaly_score":
            for name, graphs in lite.items():
                g = graphs["decoder" if op == "decode" else "encoder"]
                calls[name] = (lambda g=g, a=arg: g(a))
        repeats = [measure(calls, effort) for _ in range(REPEATS)]
        for name in calls:
            medians = [r[name].median_s for r in repeats]
            rows.append({
                "engine": name, "op": op, "batch": batch,
                "median_s": statistics.median(medians),
                "p99_s": statistics.median(r[name].p99_s for r in repeats),
                "repeat_medians_s": medians,
                "noisy": any(r[name].noisy for r in repeats),
            })
    return {
        "machine": machine_info() | {"tensorflow": tf.__version__, "ai_edge_litert": _version("ai-edge-litert")},
        "threads": 1,
        "repeats": REPEATS,
        "parity": parity,
        "tflite_bytes": {name: {g: len(b) for g, b in m.items()} for name, m in tflite.items()},
        "rows": rows,
    }


def _parity(vae, lite: dict) -> dict:
    """LiteRT fp32 against this bundle's fp32 graphs on the same inputs, in model space.

    Raises:
        RuntimeError: they disagree beyond PARITY_ATOL (the rebuild is not the same model).
    """
    from vae_edge.runtime.benchmark import bench_inputs

    x, z = bench_inputs(vae, 64, seed=1)
    xm = vae.normalize(x).astype(np.float32)
    mu, logvar = vae.encode(x)
    lmu, llogvar = lite["encoder"](xm)  # outputs sorted by name: "Identity", "Identity_1" = mu, logvar
    dec = vae.normalize(vae.decode(z))
    (ldec,) = lite["decoder"](z)
    diffs = {"mu": float(np.abs(mu - lmu).max()), "logvar": float(np.abs(logvar - llogvar).max()), "x_mean": float(np.abs(dec - ldec).max())}
    if max(diffs.values()) > PARITY_ATOL:
        raise RuntimeError(f"LiteRT rebuild differs from the bundle's graphs beyond {PARITY_ATOL}: {diffs}")
    return {"max_abs": diffs, "atol": PARITY_ATOL}


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help=".npz of the state_dict plus 'config.json' (bench.litert_env.write_weights)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = run(args.bundle, args.weights, args.quick)
    args.out.write_text(json.dumps(result, indent=1))
    json.dump({"ok": True}, sys.stdout)


if __name__ == "__main__":
    main()
