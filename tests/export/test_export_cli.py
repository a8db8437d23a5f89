"""vae-export's exit codes and refusals: 0 ok, 1 the job failed, 2 bad usage or input; never a traceback."""

import shutil

import numpy as np

from helpers import invoke, one_line_error

from vae_edge.export.cli import cli as export_main


def test_export_cli_errors(tmp_path, model_path):
    one_line_error(invoke(export_main, [tmp_path / "absent.pt"]), 2, "does not exist")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    one_line_error(invoke(export_main, [junk, "--out", tmp_path / "b"]), 2, "not a readable PyTorch checkpoint")
    one_line_error(invoke(export_main, [model_path, "--quantize", "int4", "--out", tmp_path / "b"]), 2, "unknown quantization int4")
    one_line_error(invoke(export_main, [model_path, "--quantize", "int8", "--tolerance", "0", "--no-search", "--out", tmp_path / "b"]), 1,
                   "int8 cannot be brought within its accuracy gate", "best candidate found", "search off (--no-search)")
    assert not (tmp_path / "b").exists()
    wrong = tmp_path / "wrong.npy"  # data of another sample shape: bad input, not a failed export
    np.save(wrong, np.random.default_rng(0).integers(0, 17, (40, 12)).astype(np.float32))
    one_line_error(invoke(export_main, [model_path, "--data", f"npy:{wrong}", "--out", tmp_path / "b"]), 2, "Invalid value for --data", "the model expects [1, 8, 8]")


def test_a_non_finite_tolerance_or_search_budget_is_refused(tmp_path, model_path):
    # The manifest records both, and JSON has no Infinity: JavaScript's JSON.parse would refuse the bundle.
    for option, name in (("--tolerance", "tolerance"), ("--search-budget", "search budget")):
        one_line_error(invoke(export_main, [model_path, option, "inf", "--out", tmp_path / "b"]), 2, f"{name} must be a finite number")
    assert not (tmp_path / "b").exists()


def test_export_through_a_symlinked_folder_keeps_the_link(tmp_path, model_path, bundle):
    target = tmp_path / "target"
    shutil.copytree(bundle, target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    result = invoke(export_main, [model_path, "--out", link, "--quantize", "int8", "--no-latency"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (target / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


def test_export_refuses_non_finite_weights_as_bad_input(tmp_path, model_path):
    import torch

    ckpt = torch.load(model_path, weights_only=True)
    ckpt["state_dict"]["decoder.out.bias"][0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    one_line_error(invoke(export_main, [bad, "--out", tmp_path / "b"]), 2, "NaN or Inf", "decoder.out.bias")
    one_line_error(invoke(export_main, [model_path, "--out", "/proc/b"]), 2, "cannot write there")


def test_vae_export_without_options_asks_for_export_options_defaults(tmp_path):
    # The command's defaults are read from ExportOptions: `vae-export MODEL` and export_bundle(MODEL, OUT) agree.
    from vae_edge.export.bundle import ExportOptions
    from vae_edge.export.cli import export_options

    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    params = export_main.make_context("vae-export", [str(model)]).params
    asked = export_options(**{k: v for k, v in params.items() if k not in ("model", "out", "web")})
    assert asked == ExportOptions()
    assert asked.variants == ("auto",)  # the documented default (docs/cli.md)


def test_vae_export_reads_its_defaults_without_torch():
    import subprocess
    import sys

    code = "import sys, vae_edge.export.cli; print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
