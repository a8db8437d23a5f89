"""model.pt on a full disk: an OSError naming the file ("No space left on device"), which the CLIs print
as one Error line (tests/runtime/test_hostile_cli.py), not torch's zip writer's `unexpected pos`."""

from pathlib import Path

import pytest

from vae_edge.models import read_checkpoint, save_checkpoint


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_saving_model_pt_says_so_naming_the_file(model_path):
    with pytest.raises(OSError) as caught:
        save_checkpoint("/dev/full", read_checkpoint(model_path))
    assert caught.value.filename == "/dev/full" and caught.value.strerror == "No space left on device"
    assert "enforce fail" not in str(caught.value)
