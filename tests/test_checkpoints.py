"""Checkpoint I/O: safe loading, key maps, clear errors on bad files, official-layout round trips."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from sadtalker_lib.official import io as ck
from sadtalker_lib.official import KEY_MAPS, OFFICIAL_NETWORKS, to_official_key, to_our_key


class _Tiny(nn.Module):
    """A stand-in network: a conv + batch norm, so running stats and num_batches_tracked are covered."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)


def test_key_maps_are_invertible():
    for net, pairs in KEY_MAPS.items():
        for official, ours in pairs:
            key = official + "x.weight"
            assert to_official_key(net, to_our_key(net, key)) == key


def test_round_trip_pth_and_safetensors(tmp_path):
    torch.manual_seed(0)
    a = _Tiny()
    p = ck.save_official_pth({"mapping_crop": a}, tmp_path / "mapping_00229-model.pth.tar")
    raw = ck.read_checkpoint(p)
    assert raw["epoch"] == 229 and "mapping" in raw  # the official loader returns checkpoint["epoch"]
    b = ck.load_official(_Tiny(), "mapping_crop", tmp_path)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    s = ck.save_official_safetensors({"audio2exp": a}, tmp_path / "SadTalker_V0.0.2_256.safetensors")
    c = ck.load_official(_Tiny(), "audio2exp", s)
    assert torch.equal(c.conv.weight, a.conv.weight)
    # a folder with both: the safetensors file wins, as in the official init_path
    assert ck.find_official_file("audio2exp", tmp_path).suffix == ".safetensors"


def test_missing_file_names_the_expected_files(tmp_path):
    with pytest.raises(ck.CheckpointError, match="SadTalker_V0.0.2_256.safetensors or auido2exp_00300-model.pth"):
        ck.load_official(_Tiny(), "audio2exp", tmp_path)
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.read_checkpoint(tmp_path / "nope.pth")


def test_truncated_and_empty_files(tmp_path):
    a = _Tiny()
    p = ck.save_official_pth({"mapping_crop": a}, tmp_path / "m.pth.tar")
    data = p.read_bytes()
    (tmp_path / "cut.pth.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="truncated"):
        ck.read_checkpoint(tmp_path / "cut.pth.tar")
    s = ck.save_official_safetensors({"audio2exp": a}, tmp_path / "x.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(s.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError, match="cut.safetensors"):
        ck.read_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match="empty"):
        ck.read_checkpoint(tmp_path / "empty.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("this would have run code",))


def test_pickle_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _Evil()}, tmp_path / "evil2.pth")
    for path in (p, tmp_path / "evil2.pth"):
        with pytest.raises(ck.CheckpointError, match="arbitrary code"):
            ck.read_checkpoint(path)


def test_wrong_model_lists_missing_and_unexpected_keys(tmp_path):
    p = ck.save_official_pth({"mapping_crop": _Tiny()}, tmp_path / "mapping_00229-model.pth.tar")
    other = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_official(other, "mapping_crop", p)
    msg = str(e.value)
    assert "missing keys (2): 0.weight, 0.bias" in msg and "unexpected keys" in msg and "conv.weight" in msg
    assert str(p) in msg
    # a file of another network altogether
    with pytest.raises(ck.CheckpointError, match="does not hold the 'audio2exp' network"):
        ck.load_official(_Tiny(), "audio2exp", p)


def test_shape_mismatch_is_reported(tmp_path):
    p = ck.save_official_pth({"mapping_crop": _Tiny()}, tmp_path / "mapping_00229-model.pth.tar")
    class Wider(_Tiny):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 5)
    with pytest.raises(ck.CheckpointError, match=r"conv.weight: file \(2, 1, 3, 3\) vs ours \(2, 1, 5, 5\)"):
        ck.load_official(Wider(), "mapping_crop", p)


def test_every_network_is_described():
    assert set(OFFICIAL_NETWORKS) == set(KEY_MAPS)


def test_save_networks_merges_sections(tmp_path):
    from sadtalker_lib.official.registry import save_networks

    a, b = _Tiny(), _Tiny()
    save_networks(tmp_path, {"audio2exp": a})
    save_networks(tmp_path, {"generator": b})
    assert torch.equal(ck.load_official(_Tiny(), "audio2exp", tmp_path).conv.weight, a.conv.weight)
    assert torch.equal(ck.load_official(_Tiny(), "generator", tmp_path).conv.weight, b.conv.weight)


def _write_many(path: str, value: float, times: int) -> None:
    for _ in range(times):
        ck.write_checkpoint({"w": torch.full((64, 64), value)}, path)


def test_two_processes_writing_one_checkpoint_do_not_collide(tmp_path):
    """Two notebooks (or ranks) saving the same file: each writes its own temporary, so neither renames the other's
    away (a shared "<name>.tmp" failed notebook 06 run twice at once with FileNotFoundError), and the file is always
    one writer's whole tensor."""
    import multiprocessing as mp

    from sadtalker_lib.paths import partial_path

    path = tmp_path / "mapping_00229-model.pth.tar"
    other = partial_path(path, pid=1)  # another process's half-written file
    other.write_bytes(b"half")
    ck.write_checkpoint({"w": torch.ones(2)}, path)
    assert other.read_bytes() == b"half" and partial_path(path) != other
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), float(v), 40)) for v in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    w = ck.read_checkpoint(path)["w"]
    assert w.shape == (64, 64) and len(set(w.flatten().tolist())) == 1 and float(w[0, 0]) in (1.0, 2.0)
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted([path.name, other.name])
