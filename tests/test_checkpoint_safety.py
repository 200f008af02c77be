"""Weight files are never overwritten by bad ones, crafted files cannot make us allocate, and runs do not collide."""
import argparse
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import PebbleConfig, PebbleForCausalLM
from model.checkpoint import (HOST, atomic_write, exclusive_run, load_model, load_tensors, remove_stale_temps,
                              save_model, save_tensors)
from model.common import REPO_ROOT, PebbleError, repo_path
from model.loading import weight_path
from model.lora_files import save_lora
from model.model_lora import apply_lora

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=300)
HUGE = dict(hidden_size=22528, num_hidden_layers=2, num_attention_heads=64, num_key_value_heads=8)  # 48 GB, 2 layers


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header length, JSON header, tensor bytes."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@contextmanager
def address_space_headroom(gib: float):
    """Let this process map at most `gib` GiB more than it has now, so a big allocation fails instead of swapping."""
    mapped = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                      if line.startswith("VmSize:")).split()[1]) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped + int(gib * 2**30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---------------------------------------------------------------- 1. non-finite tensors are never written

def test_nan_weights_never_replace_a_saved_adapter(tmp_path):
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(**TINY))
    apply_lora(model, rank=4, name="nova", verbose=False)
    path = save_lora(model, tmp_path / "nova_32.safetensors")
    before = path.read_bytes()
    lora_b = next(p for k, p in model.named_parameters() if k.endswith(".B.weight"))
    with torch.no_grad():
        lora_b[0, 0] = float("nan")
    with pytest.raises(PebbleError, match=r"nova_32.safetensors was not written: .* holds NaN; the previous file is "
                                          r"unchanged"):
        save_lora(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file either


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_infinite_values_are_refused_in_every_float_dtype(tmp_path, dtype):
    bad = torch.zeros(3, dtype=dtype)
    bad[1] = float("-inf")
    with pytest.raises(PebbleError, match="tensor 'w' holds an infinite value; nothing was saved"):
        save_tensors({"ok": torch.arange(3), "w": bad}, tmp_path / "w.safetensors", {})
    assert not (tmp_path / "w.safetensors").exists()


# ---------------------------------------------------------------- 2. crafted sizes are refused before allocating

def test_crafted_files_claiming_50_gb_are_refused_without_allocating(tmp_path):
    torch.manual_seed(0)
    # a tensor said to span 50 GB of a 16-byte data section
    offsets = tmp_path / "offsets_32.safetensors"
    offsets.write_bytes(safetensors_bytes(
        {"w": {"dtype": "F32", "shape": [12_500_000_000], "data_offsets": [0, 50_000_000_000]}}, bytes(16)))
    # a tiny model's weights whose metadata config describes a 50 GB model (the same layer count)
    tiny = PebbleForCausalLM(PebbleConfig(**TINY))
    metadata = save_model(tiny, tmp_path / "config_32.safetensors", config=PebbleConfig(**HUGE).to_dict())
    # a MiniMind-style .pth whose key names claim a million layers
    layers = tmp_path / "layers_32.pth"
    torch.save({**tiny.state_dict(), "model.layers.999999.mlp.gate_proj.weight": torch.zeros(1)}, layers)
    start = time.perf_counter()
    with address_space_headroom(gib=2):
        for path in (offsets, metadata, layers):
            with pytest.raises(PebbleError, match=path.name):
                load_model(path)
    assert time.perf_counter() - start < 5


def test_a_claimed_header_length_beyond_the_file_is_refused(tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(PebbleError, match=r"long.safetensors is not a valid safetensors file \(its header claims"):
        load_tensors(path)


def test_pre_1_6_torch_files_are_refused_as_they_allocate_claimed_sizes(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(PebbleError, match="old.pth uses PyTorch's pre-1.6 file format"):
        load_tensors(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from([".safetensors", ".pth"]))
def test_random_bytes_load_or_fail_with_a_pebble_error(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    try:
        load_tensors(path)
    except PebbleError as e:
        assert path.name in str(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_safetensors_headers_load_or_fail_with_a_pebble_error(tmp_path, data):
    path = tmp_path / "w.safetensors"
    save_tensors({"a": torch.ones(2, 3), "b": torch.arange(4)}, path, {"note": "x"})
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):  # overwrite a few bytes of the length field or the JSON
        raw[data.draw(st.integers(0, len(raw) - 25))] = data.draw(st.integers(0, 255))
    path.write_bytes(raw)
    try:
        tensors, _ = load_tensors(path)
    except PebbleError as e:
        assert path.name in str(e)
        return
    assert sum(t.numel() * t.element_size() for t in tensors.values()) <= len(raw)


# ---------------------------------------------------------------- 3. what is wrong with a .pth, without torch's hint

def test_a_pth_is_either_damaged_or_holds_non_tensors_and_never_suggests_unsafe_loading(tmp_path):
    torch.save({"w": torch.zeros(4)}, tmp_path / "good.pth")
    good = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "random.pth").write_bytes(bytes(range(256)) * 2)
    (tmp_path / "cut.pth").write_bytes(good[: len(good) // 2])
    torch.save({"w": torch.zeros(4), "args": argparse.Namespace(lr=1)}, tmp_path / "objects.pth")
    torch.save([torch.zeros(4)], tmp_path / "list.pth")
    expected = {"random": "is not a PyTorch weights file or is corrupted", "cut": "is not a PyTorch weights file or "
                "is corrupted", "objects": r"holds objects other than tensors \(argparse.Namespace\)",
                "list": "holds objects other than tensors"}
    for name, why in expected.items():
        with pytest.raises(PebbleError, match=f"{name}.pth {why}") as caught:
            load_tensors(tmp_path / f"{name}.pth")
        assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)
    assert torch.equal(load_tensors(tmp_path / "good.pth")[0]["w"], torch.zeros(4))


# ---------------------------------------------------------------- 4 and 6. killed writers: stale temps and locks

def test_stale_temp_files_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "a.safetensors"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {f".a.safetensors.{HOST}.{dead.pid}.x1.tmp": False,  # its writer is gone
             f".a.safetensors.{HOST}.{os.getpid()}.x2.tmp": True,  # its writer (we) still runs
             ".a.safetensors.x3.tmp": True,  # an older temp name without a pid, still recent
             ".a.safetensors.x4.tmp": False,  # ... and one two hours old
             f".a.safetensors.more.{HOST}.{dead.pid}.x5.tmp": True}  # another file's temp
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / ".a.safetensors.x4.tmp", (two_hours_ago, two_hours_ago))
    removed = remove_stale_temps(target)
    assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, kept in names.items() if kept)


KILLED_MID_SAVE = """
import sys, time
from pathlib import Path
from model.checkpoint import atomic_write, exclusive_run

def hang(tmp):
    Path(tmp).write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(120)

with exclusive_run(sys.argv[1]):
    atomic_write(sys.argv[1], hang)
"""


def test_a_run_killed_mid_save_leaves_no_lock_and_no_temp_file(tmp_path):
    target = tmp_path / "lora" / "nova_32.safetensors"
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_SAVE, str(target)], cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        with pytest.raises(PebbleError, match=f"another run is writing .*nova_32.safetensors \\(pid {child.pid}\\)"):
            with exclusive_run(target):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert any(p.suffix == ".tmp" for p in target.parent.iterdir())  # what the kill left behind
    with exclusive_run(target):  # the dead run's lock went with it
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
    assert not any(p.suffix == ".tmp" for p in target.parent.iterdir())


def test_one_lock_per_file(tmp_path):
    with exclusive_run(tmp_path / "a.safetensors"):
        with exclusive_run(tmp_path / "b.safetensors"):  # another name is another lock
            pass
        with pytest.raises(PebbleError, match=f"a.safetensors \\(pid {os.getpid()}\\); wait for it or choose"):
            with exclusive_run(tmp_path / "a.safetensors"):
                pass
    with exclusive_run(tmp_path / "a.safetensors"):  # released on leaving the block
        pass


# ---------------------------------------------------------------- 5. the repository's own paths, from any directory

def test_repo_defaults_are_the_repositorys_even_where_the_working_directory_has_its_own(tmp_path, monkeypatch):
    for folder in ("model", "out", "dataset"):
        (tmp_path / folder).mkdir()
    (tmp_path / "mine.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    for default in ("model", "out", "out/lora", "dataset"):
        assert repo_path(default).resolve() == (REPO_ROOT / default).resolve()
    assert weight_path("out", "full_sft", 256).parent.resolve() == (REPO_ROOT / "out").resolve()
    assert repo_path("mine.jsonl").resolve() == tmp_path / "mine.jsonl"  # only here: the user's file
    assert repo_path("./model").resolve() == tmp_path / "model"  # explicitly the working directory's
    assert repo_path("../x").resolve() == tmp_path.parent / "x"
    assert repo_path(".").resolve() == tmp_path
    assert repo_path(tmp_path / "out") == tmp_path / "out"
    assert repo_path("brand_new_dir") == REPO_ROOT / "brand_new_dir"  # new files go under the repository


def test_a_saved_model_still_loads(tmp_path):
    torch.manual_seed(0)
    model = PebbleForCausalLM(PebbleConfig(**TINY))
    loaded = load_model(save_model(model, tmp_path / "m_32.safetensors"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
