"""Side-by-side benchmarks (`make bench`): PyTorch eager against every variant of the bundles in onnxruntime,
the runtime's own overhead, the machine's matrix-multiply peak, cold start and peak memory.

Not a test and not installed with the package: it runs from a checkout with the workstation extras.
The timing itself is the runtime's (vae_edge.runtime.benchmark), the same core `vae-run bench` uses.
"""

import os

_CORETYPE_WAS = "VAE_EDGE_BENCH_OPENBLAS_CORETYPE_WAS"


def child_env(**extra: str) -> dict[str, str]:
    """The environment this process was started with (before __main__ changed OpenBLAS's kernels), plus ``extra``."""
    env = dict(os.environ)
    if _CORETYPE_WAS in env:
        was = env.pop(_CORETYPE_WAS)
        if was:
            env["OPENBLAS_CORETYPE"] = was
        else:
            env.pop("OPENBLAS_CORETYPE", None)
    return {**env, **extra}
