"""Helpers shared by test files (imported as ``from helpers import ...``: tests/ is on sys.path through
its conftest.py). Test files never import from each other."""

from click.testing import CliRunner


def invoke(cmd, args, **kwargs):
    """Run a click command in-process with every argument as a string; never a traceback in its output."""
    result = CliRunner().invoke(cmd, [str(a) for a in args], **kwargs)
    assert "Traceback" not in result.output, result.output
    return result


def one_line_error(result, code, *fragments):
    """The command exited with ``code`` and its last line is one ``Error`` line holding every fragment."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error"), result.output
    for fragment in fragments:
        assert fragment in last, last


def sensor_series(t: int = 400, seed: int = 0):
    """Three sensor channels [T, 3] in their own units: a temperature sine, a pressure sine at twice its
    frequency and a noisy level, each with a little measurement noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    k = np.arange(t)
    noise = rng.standard_normal((t, 3)) * [0.1, 1.0, 0.05]
    return np.stack([20 + 5 * np.sin(k / 8), 1000 + 30 * np.sin(k / 4), np.full(t, 0.5)], axis=1) + noise


def write_csv(path, x, header="time,temp,pressure,level", times=True):
    """``x`` [T, C] as a CSV with a header row (and a leading time column unless ``times`` is False)."""
    lines = [header] + [",".join([str(i)] * times + [f"{v:.5f}" for v in row]) for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    return path


def export_trained(folder, data, config):
    """Train the model ``config`` briefly on ``data`` (2 epochs), save ``folder``/model.pt and export it
    with fp32 + int8, untimed, to ``folder``/bundle: (model.pt, bundle)."""
    from vae_edge.export.bundle import ExportOptions, export_bundle
    from vae_edge.trainer import TrainConfig, make_checkpoint, save_checkpoint, train

    result = train(config, data, TrainConfig(epochs=2, batch_size=64, seed=0, iw_samples=4, quiet=True))
    path = folder / "model.pt"
    save_checkpoint(path, make_checkpoint(result.model, data=data.describe(), metrics=result.metrics))
    export_bundle(path, folder / "bundle", ExportOptions(variants=("int8",), latency=None))
    return path, folder / "bundle"
