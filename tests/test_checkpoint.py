"""Checkpoints: atomic saves, safe loads, and a one-line error for every way a file can be wrong."""
import os
import pickle
import shlex
import zipfile

import numpy as np
import pytest
import torch

import ssm_metarl.io.checkpoint as checkpoint_module
from ssm_metarl import CheckpointError, StateSpaceModel, load_checkpoint, save_checkpoint


def _load_error(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    return message


def test_roundtrip_keeps_kind_config_weights_and_extra(tmp_path):
    weights = {"w": torch.randn(3, 2), "b": torch.arange(4)}
    save_checkpoint(tmp_path / "a.pth", kind="Thing", config={"n": 3, "name": "x"}, state_dict=weights,
                    extra={"log": [1.5, 2.5], "note": None})
    ckpt = load_checkpoint(tmp_path / "a.pth", kind="Thing", expected_config={"n": 3, "name": "x"})
    assert ckpt.kind == "Thing" and ckpt.config == {"n": 3, "name": "x"}
    assert ckpt.extra == {"log": [1.5, 2.5], "note": None}
    assert set(ckpt.state_dict) == {"w", "b"}
    assert torch.equal(ckpt.state_dict["w"], weights["w"]) and torch.equal(ckpt.state_dict["b"], weights["b"])


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    save_checkpoint(path, kind="Thing", config={"n": 1}, state_dict={"w": torch.ones(2)})
    before = path.read_bytes()

    def crash_half_way(obj, f):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, kind="Thing", config={"n": 2}, state_dict={"w": torch.zeros(2)})
    assert path.read_bytes() == before, "a crash during save must not touch the existing file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"], "temporary file left behind"
    monkeypatch.undo()
    assert load_checkpoint(path).config == {"n": 1}


def test_save_refuses_values_that_weights_only_load_could_not_read(tmp_path):
    with pytest.raises(ValueError, match=r"extra\['log'\]\[1\] is a numpy.float64"):
        save_checkpoint(tmp_path / "a.pth", kind="T", config={}, state_dict={}, extra={"log": [1.0, np.float64(2)]})
    with pytest.raises(ValueError, match=r"config\['shape'\]"):
        save_checkpoint(tmp_path / "a.pth", kind="T", config={"shape": np.zeros(2)}, state_dict={})
    assert not (tmp_path / "a.pth").exists()


def test_missing_file(tmp_path):
    assert "no such checkpoint file" in _load_error(tmp_path / "nope.pth")


@pytest.mark.parametrize("content", [b"hello, I am a text file", b"", bytes(range(7, 250))],
                         ids=["text", "empty", "random bytes"])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    assert "not a checkpoint (not a torch file)" in _load_error(path)


def test_other_files_that_are_not_checkpoints(tmp_path):
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f, protocol=4)
    assert "not a checkpoint (a plain pickle" in _load_error(tmp_path / "plain.pkl")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    assert "not a checkpoint (a zip archive without torch data)" in _load_error(tmp_path / "other.zip")
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pth")  # a torch file, but not ours
    assert "not an ssm_metarl checkpoint (missing format marker" in _load_error(tmp_path / "foreign.pth")


def test_truncated_file(tmp_path):
    path = StateSpaceModel().save(tmp_path / "model.pth")
    data = path.read_bytes()
    for fraction in (0.3, 0.6, 0.95):
        cut = tmp_path / f"cut{fraction}.pth"
        cut.write_bytes(data[: int(len(data) * fraction)])
        assert "the checkpoint is truncated" in _load_error(cut)


def test_corrupted_bytes_inside_a_complete_file(tmp_path):
    path = StateSpaceModel().save(tmp_path / "model.pth")
    data = bytearray(path.read_bytes())
    start = data.index(b"data.pkl") + 40  # inside the pickled structure
    data[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    message = _load_error(path)
    assert "corrupt" in message or "truncated" in message


class _RunsCode:
    """Unpickling this object would run a shell command: exactly what loading must never do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"format": checkpoint_module.FORMAT, "version": 1, "kind": "StateSpaceModel",
               "config": {}, "state_dict": {}, "extra": {"x": _RunsCode(marker)}}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    message = _load_error(path)
    assert "could run code" in message and "system" in message, message
    assert not marker.exists(), "loading the checkpoint executed the payload"
    # Control: the payload is real; an unsafe loader does run it.
    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.exists()


def test_config_mismatch_names_the_field_and_both_values(tmp_path):
    path = StateSpaceModel(state_dim=16).save(tmp_path / "model.pth")
    message = _load_error(path, expected_config={"state_dim": 32, "input_dim": 4, "output_dim": 4,
                                                 "hidden_dim": 64, "bounded": True})
    assert "checkpoint has state_dim=16, model expects 32" in message
    assert "no 'extra_field'" in _load_error(path, expected_config={"extra_field": 1})
    assert "unknown fields ['state_dim']" in _load_error(
        path, expected_config={"input_dim": 4, "output_dim": 4, "hidden_dim": 64, "bounded": True})


def test_kind_and_version_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "a.pth", kind="DiagonalSSM", config={}, state_dict={})
    assert "holds a DiagonalSSM, expected a StateSpaceModel" in _load_error(path, kind="StateSpaceModel")
    torch.save({"format": checkpoint_module.FORMAT, "version": 99, "kind": "T", "config": {}, "state_dict": {},
                "extra": {}}, tmp_path / "future.pth")
    assert "checkpoint version 99" in _load_error(tmp_path / "future.pth")
    torch.save({"format": checkpoint_module.FORMAT, "version": 1, "kind": "T", "config": [], "state_dict": {},
                "extra": {}}, tmp_path / "bad.pth")
    assert "field 'config' is missing or malformed" in _load_error(tmp_path / "bad.pth")
