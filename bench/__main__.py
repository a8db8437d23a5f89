"""`python -m bench` (what `make bench` runs): measure, print the table, write bench/results.json."""

from __future__ import annotations

import os

from . import _CORETYPE_WAS


def _openblas_kernels() -> None:
    # numpy's OpenBLAS (0.3.31) does not recognise this machine's CPU (AMD family 26) and these machines
    # also set OPENBLAS_CORETYPE=Haswell: AVX2 kernels, 66-73 GFLOPS on one thread, against 100-170 with
    # its SkylakeX (AVX-512) kernels, which onnxruntime's own kernels (MLAS) do use. The peak is meant
    # to be the machine's, so on a CPU with AVX-512 this process asks for those; only numpy's matmul
    # peak uses OpenBLAS here (torch has its own BLAS, the runtime none). Before numpy loads OpenBLAS.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            avx512 = any(line.startswith("flags") and " avx512f " in f" {line.split(':', 1)[1]} " for line in f)
    except OSError:
        avx512 = False
    if avx512:
        os.environ[_CORETYPE_WAS] = os.environ.get("OPENBLAS_CORETYPE", "")  # children get it back: child_env()
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"


_openblas_kernels()

from .cli import main  # noqa: E402  (numpy is imported from here on)

if __name__ == "__main__":
    main()
