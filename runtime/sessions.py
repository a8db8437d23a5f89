"""onnxruntime sessions for a bundle's graphs: options, providers, the direct run path, saving the
optimised graphs, and the check that each loaded graph is the one its manifest describes."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import contract
from .bundle import BundleError, check_graph_bytes, graph_path, per_feature, verify_files
from .files import atomic_path
from .validation import check_int, one_line, quote

log = logging.getLogger(__name__)

MAX_THREADS = 1024  # far above any CPU this runs on; a typo such as 100000 would hang creating threads

# Names for onnxruntime's graph optimisation levels, from none to every fusion.
OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

RunFn = Callable[[list[str], dict, ort.RunOptions], list[np.ndarray]]


# Batches up to this size run on buffers bound to the session once per thread (IOBinding); larger ones,
# where the fixed cost of a call no longer shows, run through session.run. At most BOUND_SIZES batch sizes
# are bound per thread and graph (a few KB each here); others also run through session.run.
MAX_BOUND_BATCH = 256
BOUND_SIZES = 8


class Bound:
    """One thread's pre-bound call of a graph at one batch size: fill ``input``, call, read the outputs.

    The outputs are the same arrays at every call: the caller copies (or rescales) them into arrays of
    its own before this thread calls the graph again at this batch size.
    """

    __slots__ = ("input", "first_input", "flat", "flat_bits", "outputs", "firsts", "_call")

    def __init__(self, graph: "Graph", n: int):
        self.input = np.empty((n, *graph._in_dims), np.float32)
        # A single sample is written through this view of the first row: a ufunc or copy into [*shape] is
        # ~0.5 us faster at batch 1 than one that broadcasts [*shape] into [1, *shape].
        self.first_input = self.input[0]
        self.flat = self.input.reshape(-1)  # the same memory, flat, and as integers for checks on the bits:
        self.flat_bits = self.flat.view(np.uint32)  # e.g. the largest as bits[bits.argmax()], 5x bits.max() at batch 1
        self.outputs = [np.empty((n, *dims), np.float32) for dims in graph._out_dims]
        # views of the first sample of each output, made once: a single sample's result is copied from them
        self.firsts = [out[0] for out in self.outputs]
        self._call = graph.bind({graph.input: self.input}, dict(zip(graph.outputs, self.outputs)))

    def __call__(self) -> list[np.ndarray]:
        """Run the graph on ``input``; returns ``outputs``.

        Raises:
            RuntimeError: onnxruntime failed; one line naming the graph.
        """
        self._call()
        return self.outputs


class BoundCall:
    """A graph call on arrays bound to the session once (inputs read, outputs written in place at every
    call). The arrays must outlive it and stay where they are; the caller fills and reads them."""

    __slots__ = ("_binding", "_run", "_options", "_name")

    def __init__(self, graph: "Graph", inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        binding = graph.session.io_binding()
        for name, a in inputs.items():
            binding.bind_input(name, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
        for name, a in outputs.items():
            binding.bind_output(name, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
        self._binding = binding._iobinding
        self._run = graph.session._sess.run_with_iobinding
        self._options = graph._bound_options
        self._name = graph.spec.name

    def __call__(self) -> None:
        """Run the graph.

        Raises:
            RuntimeError: onnxruntime failed; one line naming the graph.
        """
        try:
            self._run(self._binding, self._options)
        except MemoryError:
            raise
        except Exception as exc:  # onnxruntime's own exception types derive from Exception only
            raise self.failed(exc) from None

    def parts(self) -> tuple[Callable, object, ort.RunOptions]:
        """(run, binding, options): ``run(binding, options)`` is this call without its Python frame, for a
        loop that calls it per character (~0.3 us of a ~15 us step); the loop turns onnxruntime's
        exceptions into :meth:`failed`."""
        return self._run, self._binding, self._options

    def failed(self, exc: BaseException) -> RuntimeError:
        """The one-line error for onnxruntime's ``exc`` while running this graph."""
        return RuntimeError(f"onnxruntime failed running the {self._name}: {_first_line(exc)}")


class _Calls(threading.local):
    """Per thread: {batch size: Bound}; __init__ runs once in each thread that looks, so the lookup of a
    bound call is one attribute and one dict access, with no default to test for."""

    def __init__(self) -> None:
        self.calls: dict[int, Bound] = {}


class Graph:
    """One loaded graph of a bundle: its session, and what every call needs hoisted out of the call.

    Hoisted (measured at batch 1, where a decode takes ~5 us): the output names, which
    ``session.run(None, ...)`` rebuilds each time, and one RunOptions, without which onnxruntime builds
    a default one per call (~0.6 us together); RunOptions is only read during a run, so threads may
    share it. :func:`direct_run` drops run()'s Python-side checks (~0.5 us more). :meth:`bound` goes
    further for small batches: buffers bound once per thread, so a call neither converts its input nor
    allocates its outputs (docs/benchmarks.md has the figures).
    """

    def __init__(self, spec: contract.GraphSpec, session: ort.InferenceSession):
        self.spec = spec
        self.session = session
        self.input = session.get_inputs()[0].name  # the first input's name, for single-input graphs
        self.outputs = [o.name for o in session.get_outputs()]
        self._run = direct_run(session)
        self._options = ort.RunOptions()
        # Whether arrays in host memory can be bound to the session (:meth:`bind`): the CPU provider alone,
        # onnxruntime's C++ IOBinding call reachable.
        self.can_bind = session.get_providers() == ["CPUExecutionProvider"] and callable(getattr(getattr(session, "_sess", None), "run_with_iobinding", None))
        self._bindable = self.can_bind and _fixed_float(session)
        if self.can_bind:
            # onnxruntime 1.32 looks up "gpu_graph_id" in the RunOptions of every bound run and, when it is
            # absent, throws and catches a C++ exception inside (tens of us); naming it avoids that.
            self._bound_options = ort.RunOptions()
            self._bound_options.add_run_config_entry("gpu_graph_id", "0")
        if self._bindable:
            self._in_dims = [int(d) for d in session.get_inputs()[0].shape[1:]]
            self._out_dims = [[int(d) for d in o.shape[1:]] for o in session.get_outputs()]
        self.local = _Calls()  # per thread, .calls: {batch size: Bound}; read directly by hot paths

    def bound(self, n: int) -> Bound | None:
        """This thread's pre-bound call at batch size ``n``, made on first use; None where there is none
        (another provider, a graph with dynamic sizes beyond the batch, ``n`` of 0 or above
        MAX_BOUND_BATCH, or BOUND_SIZES sizes already bound on this thread)."""
        call = self.local.calls.get(n)  # the hit, first: ~0.1 us of a ~5 us call
        if call is None and self._bindable and 0 < n <= MAX_BOUND_BATCH and len(self.local.calls) < BOUND_SIZES:
            call = self.local.calls[n] = Bound(self, n)
        return call

    def bind(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> BoundCall:
        """A call of this graph on ``inputs`` and ``outputs`` (name -> C-contiguous array of the graph's
        type), bound once; only where :attr:`can_bind`."""
        if not self.can_bind:
            raise ValueError(f"the {self.spec.name} graph runs on {self.session.get_providers()}; arrays are bound on the CPU provider alone")
        return BoundCall(self, inputs, outputs)

    def run(self, feed: dict) -> list[np.ndarray]:
        """Outputs of the graph for ``feed`` (input name -> checked float32 array), in spec order.

        Raises:
            RuntimeError: onnxruntime failed; one line naming the graph.
        """
        try:
            return self._run(self.outputs, feed, self._options)
        except MemoryError:
            raise
        except Exception as exc:  # onnxruntime's own exception types derive from Exception only
            raise RuntimeError(f"onnxruntime failed running the {self.spec.name}: {_first_line(exc)}") from None


def open_graphs(
    root: Path,
    manifest: dict,
    precision: str,
    specs: Sequence[contract.GraphSpec],
    *,
    threads: int | None = None,
    spinning: bool = False,
    providers: object = None,
    optimization: str = "all",
    save_optimized: str | os.PathLike | None = None,
    format: str = "onnx",
    check: Callable[[Path, dict, str, dict[str, Graph]], None] | None = None,
) -> dict[str, Graph]:
    """Verify and open ``precision``'s graphs of the bundle at ``root`` (see ``VAE.load`` for the options;
    ``check``: the modality's check of the graphs against the manifest, default :func:`check_graphs`).

    Sessions are built from the bytes that were hashed, so a file swapped after the check cannot run.

    Returns:
        graph name -> Graph, in ``specs`` order.

    Raises:
        BundleError: a missing, tampered or unloadable graph, or one its manifest does not describe.
        ValueError: an unknown format, provider, optimisation level or thread count, or a
            ``save_optimized`` folder that is the bundle itself.
        OSError: ``save_optimized`` cannot be written.
    """
    if format not in contract.FORMATS:
        raise ValueError(f"format {quote(format)} is not one of {', '.join(contract.FORMATS)}")
    options = [session_options(threads, optimization, spinning=spinning) for _ in specs]  # one each: save paths differ
    entry = manifest["variants"][precision]
    for spec, opts in zip(specs, options):
        try:
            config = contract.session_config(entry, precision, spec.name)
        except ValueError as exc:
            raise BundleError(f"{root}: {exc}") from None
        for key, value in config.items():
            opts.add_session_config_entry(key, value)
    providers = check_providers(providers)
    save_dir = check_save_dir(root, save_optimized)
    paths = [graph_path(root, manifest, precision, spec.name, format) for spec in specs]
    verified = verify_files(root, manifest, keep=tuple(p.name for p in paths))
    for gp in paths:
        check_graph_bytes(gp, verified[gp.name], manifest, precision, format)
    graphs = {spec.name: Graph(spec, open_session(gp, verified[gp.name], opts, providers, save_dir)) for spec, gp, opts in zip(specs, paths, options)}
    (check or check_graphs)(root, manifest, precision, graphs)
    log.debug("loaded %s (%s) with providers %s", root, precision, providers)
    return graphs


def _fixed_float(session: ort.InferenceSession) -> bool:
    """Whether :class:`Bound` can run this (bindable) session: one input, float32 tensors of fixed size beyond the batch."""
    args = [*session.get_inputs(), *session.get_outputs()]
    return len(session.get_inputs()) == 1 and all(a.type == "tensor(float)" and all(isinstance(d, int) for d in a.shape[1:]) for a in args)


def direct_run(session: ort.InferenceSession) -> RunFn:
    """The fastest correct way to call ``session.run(outputs, feed, options)``.

    ``InferenceSession.run`` checks the feed's names and the ownership of OrtValues in Python and then
    calls the C++ session (``_sess.run``, same arguments). Our feeds are numpy arrays checked before they
    get here, so on the CPU provider alone the C++ call is taken directly. With other providers run()
    also carries onnxruntime's fallback to the CPU after a provider failure, so it is kept there (and
    wherever a future onnxruntime lacks ``_sess``).
    """
    inner = getattr(session, "_sess", None)
    if session.get_providers() == ["CPUExecutionProvider"] and callable(getattr(inner, "run", None)):
        return inner.run
    return session.run


def check_graphs(root: Path, manifest: dict, precision: str, graphs: dict[str, Graph]) -> None:
    """The manifest must describe the graphs it names: float32 tensors with a dynamic batch axis and the
    per-sample shapes of the contract's specs, the facts each graph carries in its metadata (which its
    sha256 covers, unlike manifest.json itself) including the variant method, and, run once on a batch
    of two, outputs of exactly the shapes declared. Done once here, at load, never per call.

    Raises:
        BundleError: naming the graph and what disagrees.
    """
    shape, latent = list(manifest["data"]["shape"]), manifest["model"]["latent_dim"]
    dims = contract.manifest_sizes(manifest)
    facts = contract.exact_metadata(latent, shape, manifest["model"]["likelihood"])
    entry = manifest["variants"][precision]
    for name, graph in graphs.items():
        path = root / entry[name] if isinstance(entry.get(name), str) else root / name
        session = graph.session
        args = [*session.get_inputs(), *session.get_outputs()]
        for arg in args:
            if arg.type != contract.GRAPH_TENSOR_TYPE:
                raise BundleError(f"{path}: {arg.name!r} is a {arg.type}; every graph input and output must be {contract.GRAPH_TENSOR_TYPE} (float32)")
            if not arg.shape or isinstance(arg.shape[0], int):
                raise BundleError(f"{path}: {arg.name!r} has shape {arg.shape}; its first axis must be the dynamic batch axis")
        ins, outs = ([list(a.shape[1:]) for a in args] for args in (session.get_inputs(), session.get_outputs()))
        want_in, want_out = graph.spec.per_sample(dims)
        if ins != want_in or outs != want_out:
            raise BundleError(f"{path}: takes {ins} and gives {outs} (per sample), the manifest's {name} should take {want_in} and give {want_out}")
        meta = session.get_modelmeta().custom_metadata_map
        for key, (section, field) in contract.META_NUMBERS.items():
            if key in meta:
                try:
                    stamped = json.loads(meta[key])
                except (ValueError, RecursionError):
                    raise BundleError(f"{path}: metadata {key} is not JSON") from None
                if not _same_numbers(stamped, manifest[section].get(field), shape):
                    raise BundleError(f"{path}: was exported with {field} {quote(stamped)}, the manifest says {quote(manifest[section].get(field))}")
        for key, value in facts.items():
            if key in meta and meta[key] != value:
                raise BundleError(f"{path}: carries {key}={quote(meta[key])}, the manifest says {value}")
        made_as, method = precision, entry.get("method")
        if precision == contract.AUTO:  # the recommended pair: each graph is checked as the variant that made it
            sources = entry.get("from") if isinstance(entry.get("from"), dict) else {}
            # Not named there: its own graph composed from the pair (score), as their variant where they agree.
            made_as = sources.get(name) or (next(iter(set(sources.values()))) if len(set(sources.values())) == 1 else contract.AUTO)
            if made_as not in contract.VARIANTS and made_as != contract.AUTO:
                raise BundleError(f"{path}: the {precision} variant names no known variant for its {name} graph ({quote(made_as)})")
            source_entry = manifest["variants"].get(made_as) if made_as != contract.AUTO else None
            method = source_entry.get("method") if isinstance(source_entry, dict) else None
        _check_method(path, meta, made_as, method)
        _probe(path, graph, want_in, want_out)


def _check_method(path: Path, meta: dict, precision: str, method: object) -> None:
    """The variant a graph was made as (stamped by the exporter) is the one the manifest names it as."""
    stamped = meta.get(contract.META_VARIANT_METHOD)
    if precision == contract.BASE_VARIANT:
        if stamped is not None:
            raise BundleError(f"{path}: is a derived variant ({quote(stamped)}), not the {precision} graph the manifest names it as")
        return
    if stamped is None:
        raise BundleError(f"{path}: carries no variant method; it is not an {precision} graph (an {contract.BASE_VARIANT} graph named as {precision}?)")
    if isinstance(method, str) and not method.startswith(stamped):  # the manifest may add notes after it
        raise BundleError(f"{path}: was made by {quote(stamped)}, the manifest's {precision} variant says {quote(method)}")


def _probe(path: Path, graph: Graph, want_in: list[list[int]], want_out: list[list[int]]) -> None:
    """Run the graph once on zeros at batch 2: the outputs must be float32 of the declared shapes."""
    feed = {arg.name: np.zeros([2, *dims], np.float32) for arg, dims in zip(graph.session.get_inputs(), want_in)}
    try:
        outputs = graph.run(feed)
    except RuntimeError as exc:
        raise BundleError(f"{path}: does not run on a batch of 2 ({exc})") from None
    got = [(str(o.dtype), list(o.shape)) if isinstance(o, np.ndarray) else (type(o).__name__, None) for o in outputs]
    want = [("float32", [2, *dims]) for dims in want_out]
    if got != want:
        raise BundleError(f"{path}: gives {got} for a batch of 2, its declaration says {want}")


def _same_numbers(graph: object, manifest: object, shape: list) -> bool:
    """Graph metadata and manifest agree on every number-valued entry (offset, scale, std)."""
    if not isinstance(graph, dict) or not isinstance(manifest, dict):
        return graph == manifest
    for key in set(graph) | set(manifest):
        a, b = graph.get(key), manifest.get(key)
        if isinstance(a, (str, type(None))) or isinstance(b, (str, type(None))):
            if a != b:
                return False
            continue
        fa, fb = per_feature(a, shape), per_feature(b, shape)
        if fa is None or fb is None or fa.shape != fb.shape or not np.array_equal(fa, fb):
            return False
    return True


def open_session(gp: Path, model: bytes, options: ort.SessionOptions, providers: list, save_dir: Path | None) -> ort.InferenceSession:
    """One graph's session, built from ``model``, the bytes of ``gp`` that verify_files hashed (so that a
    file swapped after the check cannot run); with ``save_dir``, onnxruntime also writes the optimised graph there.

    Raises:
        BundleError: onnxruntime cannot load the graph.
        OSError: ``save_dir`` cannot be written.
    """
    try:
        if save_dir is None:
            return ort.InferenceSession(model, sess_options=options, providers=providers)
        with atomic_path(save_dir / gp.name) as tmp:
            # The temporary name does not end in .ort, so say which format to write.
            options.add_session_config_entry("session.save_model_format", "ORT" if gp.suffix == ".ort" else "ONNX")
            options.optimized_model_filepath = str(tmp)  # onnxruntime writes it while building the session
            return ort.InferenceSession(model, sess_options=options, providers=providers)
    except OSError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{gp}: onnxruntime cannot load it ({_first_line(exc)})") from None


def check_save_dir(root: Path, save_dir: str | os.PathLike | None) -> Path | None:
    """The folder for optimised graphs: created now, and never the bundle itself (whose sha256s it would break).

    Raises:
        ValueError: an empty path, or the bundle folder.
        OSError: the folder cannot be made.
    """
    if save_dir is None:
        return None
    folder = Path(save_dir)
    if not str(save_dir).strip():
        raise ValueError("save_optimized: expected a folder path, got an empty string")
    if folder.exists() and folder.resolve() == root.resolve():
        raise ValueError(one_line(f"save_optimized: {folder} is the bundle folder; the optimised graphs would replace the verified ones"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def session_options(threads: int | None, optimization: str = "all", *, spinning: bool = False) -> ort.SessionOptions:
    """SessionOptions for one graph: optimisation level by name, fatal-only logging, ``threads`` intra-op
    threads, which spin between calls only with ``spinning``.

    Raises:
        ValueError: an unknown optimisation level, ``threads`` not an integer in [1, MAX_THREADS], or
            ``spinning`` not a bool.
    """
    if not isinstance(spinning, bool):
        raise ValueError(f"spinning: expected True or False, got {quote(spinning)}")
    options = ort.SessionOptions()
    if not isinstance(optimization, str) or optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization: expected one of {', '.join(OPTIMIZATION_LEVELS)}, got {quote(optimization)}")
    # Default "all": fusions and constant folding happen once at load, and these graphs are small.
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    # Fatal only: every error onnxruntime logs is also raised to the caller, who reports it once.
    options.log_severity_level = 4
    # onnxruntime's idle pool threads spin by default, burning a core each and, where cores are shared,
    # holding them from the thread that has work: batch-1 p99 of milliseconds (docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        check_int("threads", threads, minimum=1, maximum=MAX_THREADS)
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


def check_providers(providers: object) -> list:
    """Execution providers as onnxruntime takes them: names, or (name, options dict) pairs.

    Raises:
        ValueError: an empty list, an entry of another form, or a provider this onnxruntime lacks.
    """
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    if not isinstance(providers, (list, tuple)) or not providers:
        raise ValueError(f"providers: expected a non-empty list of provider names, got {quote(providers)}")
    available = ort.get_available_providers()
    for entry in providers:
        name = entry[0] if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict) else entry
        if not isinstance(name, str):
            raise ValueError(f"providers: expected a provider name or (name, options dict), got {quote(entry)}")
        if name not in available:
            # A real provider missing from this build (e.g. CUDA in the CPU wheel) and a typo read differently.
            why = "is not built into this onnxruntime" if name in ort.get_all_providers() else "is not an onnxruntime execution provider"
            raise ValueError(f"providers: {quote(name)} {why}; this onnxruntime offers {', '.join(available)}")
    return list(providers)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
