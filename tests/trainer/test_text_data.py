"""text:FILE: reading rules, the train-split vocabulary, token dropout, free bits and vae-train on text."""

import pytest
import torch
from click.testing import CliRunner

from vae_edge.models.text import BOS, PAD, UNK
from vae_edge.runtime.vocab import Vocabulary
from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.data import DataError
from vae_edge.trainer.textdata import load_text
from vae_edge.trainer.textloop import drop_tokens, kl_term


def write(tmp_path, data: bytes, name="t.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_blank_lines_skipped_and_counted(text_file):
    data = load_text(f"text:{text_file}")
    assert data.blank_skipped == 2
    assert len(data.train) + len(data.val) + len(data.test) == 400
    assert all(line.strip() for line in data.train + data.val + data.test)


def test_vocabulary_comes_from_the_train_split_and_unknowns_map_to_unk(tmp_path):
    lines = [f"ab{i % 3}" for i in range(60)] + ["abz"]  # 'z' on one line only
    data = load_text(f"text:{write(tmp_path, chr(10).join(lines).encode())}")
    in_train = any("z" in line for line in data.train)
    assert ("z" in data.vocab.chars) == in_train
    vocab = Vocabulary(["a", "b"], max_len=8)
    assert vocab.ids("abq") == [4, 5, UNK]
    tokens, lengths = vocab.encode(["ab", "a"])
    assert tokens.tolist() == [[4, 5, 2], [4, 2, 0]] and lengths.tolist() == [3, 2]


def test_long_lines_refused_cut_or_skipped(tmp_path):
    path = write(tmp_path, ("\n".join(["short"] * 20 + ["x" * 30])).encode())
    with pytest.raises(DataError, match="line 21 has 30 characters"):
        load_text(f"text:{path}", max_len=10)
    cut = load_text(f"text:{path}", max_len=10, long_lines="cut")
    assert cut.long_lines == 1 and max(len(x) for x in cut.train + cut.val + cut.test) == 10
    skipped = load_text(f"text:{path}", max_len=10, long_lines="skip")
    assert skipped.long_lines == 1 and len(skipped.train + skipped.val + skipped.test) == 20


@pytest.mark.parametrize("content, message", [
    (b"abc\x00\x01def\n", "binary"),
    (b"caf\xe9\nabc\n", "not valid UTF-8"),
    (b"", "is empty"),
    (b"\n \n\n", "no text"),
])
def test_bad_files_refused(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_text(f"text:{write(tmp_path, content)}")


def test_token_dropout_replaces_whole_tokens_by_unk():
    dec_in = torch.tensor([[BOS, 5, 6, 7, 8, 9, PAD, PAD]] * 500)
    dropped = drop_tokens(dec_in, 0.3, torch.Generator().manual_seed(0))
    changed = dropped != dec_in
    assert (dropped[changed] == UNK).all()
    assert not changed[:, 0].any() and not changed[:, 6:].any()  # <bos> and padding stay
    assert 0.25 < changed[:, 1:6].float().mean() < 0.35


def test_free_bits_floor_each_dimension():
    kl = torch.tensor([[0.0, 2.0], [0.2, 4.0]])  # batch means 0.1 and 3.0
    assert kl_term(kl, 0.0).item() == pytest.approx(3.1)
    assert kl_term(kl, 0.5).item() == pytest.approx(3.5)


def test_vae_train_on_text(tmp_path, text_file):
    out = tmp_path / "m" / "model.pt"
    result = CliRunner().invoke(train_main, ["--data", f"text:{text_file}", "--arch", "gru", "--epochs", "1", "--hidden", "16", "--latent", "2",
                                             "--embed", "8", "--iw-samples", "2", "--max-len", "12", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 blank lines skipped" in result.output and "active units" in result.output
    # 318 train lines are 5 steps of 64: one epoch of at least --min-epoch-steps (100) goes over them 20 times.
    assert "after 1 epoch of 20 passes each" in result.output
    assert out.is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--arch", "gru"], "give --data text:FILE"),
    (["--data", "text:{f}", "--channels", "8"], "does not apply"),
    (["--data", "text:{f}", "--arch", "mlp"], "use --arch gru"),
    (["--max-len", "5"], "applies to --data text:FILE only"),
    (["--token-dropout-epochs", "2"], "applies to --data text:FILE only"),
    (["--data", "text:{f}", "--split", "0.8,0.1,0.1"], "--split"),
    (["--data", "text:{f}", "--iw-train", "3"], "applies to --objective iwae only"),
    (["--data", "text:{f}", "--max-len", "3"], "more than the limit"),
])
def test_vae_train_text_usage_errors(tmp_path, text_file, args, fragment):
    args = [a.format(f=text_file) for a in args]
    result = CliRunner().invoke(train_main, [*args, "--epochs", "1", "--out", str(tmp_path / "model.pt")])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert not (tmp_path / "model.pt").exists()
