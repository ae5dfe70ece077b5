"""The main job's second process (sadtalker_lib.side_process): return values come back, output goes to the log,
errors come back with the log's path."""
import pytest
import torch
from torch import nn

from sadtalker_lib.side_process import SideProcess, SideProcessError


def _train_a_layer(seed: int) -> dict:
    print("training in the second process")
    torch.manual_seed(seed)
    layer = nn.Linear(3, 2)
    return {"threads": torch.get_num_threads(), "layer": layer}


def _fail(message: str):
    print("about to fail")
    raise ValueError(message)


def test_result_and_output_come_back(tmp_path):
    side = SideProcess(_train_a_layer, 7, log=tmp_path / "side.log", threads=1)
    out = side.result()
    torch.manual_seed(7)
    assert torch.equal(out["layer"].weight, nn.Linear(3, 2).weight)  # a module, pickled back whole
    assert out["threads"] == 1
    assert "training in the second process" in (tmp_path / "side.log").read_text()


def test_an_error_names_the_log(tmp_path):
    side = SideProcess(_fail, "bad corpus", log=tmp_path / "side.log")
    with pytest.raises(SideProcessError, match="bad corpus") as err:
        side.result()
    assert str(tmp_path / "side.log") in str(err.value)
    assert "about to fail" in str(err.value)
