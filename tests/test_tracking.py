"""Experiment tracking: each installed backend records a few steps offline, and what it wrote to disk, read back
with that backend's own record format (TensorBoard's event reader; the protobuf records of wandb's and swanlab's
offline run files), holds the values that were logged. A backend that is not installed is skipped."""
import glob
import struct

import pytest

from model.common import PebbleError
from trainer import tracking
from trainer.tracking import Tracker

RECORDS = [{"step": s, "epoch": 0, "loss": 3.0 / s, "lr": 5e-4 * s, "grad_norm": 0.25 * s, "note": "text"}
           for s in (10, 20, 30)]
EXPECTED = {key: {r["step"]: r[key] for r in RECORDS} for key in ("loss", "lr", "grad_norm")}
CONFIG = {"learning_rate": 5e-4, "batch_size": 4, "targets": "square"}


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No mode variables, no API keys and no netrc: every backend must choose offline by itself."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "SWANLAB_MODE", "SWANLAB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("SWANLAB_ROOT", str(tmp_path / "swanlab-root"))


def run_offline(backend: str, save_dir) -> Tracker:
    tracker = Tracker.start("pebble-test", "lora_test_64", CONFIG, str(save_dir), backend=backend)
    for record in RECORDS:
        tracker.log(record, step=record["step"])
    tracker.finish()
    tracker.finish()  # a second call does nothing
    return tracker


def log_records(path) -> list[bytes]:
    """The records of a LevelDB-style log file (7-byte file header; 32 KiB blocks; 7-byte record headers
    of checksum, length and kind, a record cut across blocks as FIRST, MIDDLE..., LAST), as wandb's and swanlab's
    offline run files store them. Checksums are not verified."""
    data = open(path, "rb").read()
    block, out, pos, pending = 32768, [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            out.append(pending)
            pending = b""
    return out


def only(pattern: str) -> str:
    found = glob.glob(pattern, recursive=True)
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_tensorboard_writes_event_files_that_its_reader_reads_back(tmp_path, no_credentials):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = run_offline("tensorboard", tmp_path)
    run_dir = only(str(tmp_path / "runs" / "pebble-test" / "lora_test_64_*"))
    assert run_dir in tracker.where and glob.glob(f"{run_dir}/events.out.tfevents.*")
    events = EventAccumulator(run_dir)
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"epoch", "loss", "lr", "grad_norm"}
    for key, by_step in EXPECTED.items():
        got = {e.step: e.value for e in events.Scalars(key)}
        assert got == pytest.approx(by_step, rel=1e-6)  # stored as float32


def test_wandb_runs_offline_without_a_key_and_its_run_file_holds_the_values(tmp_path, no_credentials):
    pytest.importorskip("wandb")
    from wandb.proto.wandb_internal_pb2 import Record

    assert tracking.wandb_mode() == "offline"
    tracker = run_offline("wandb", tmp_path)
    run_file = only(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert "offline run in" in tracker.where and "wandb sync" in tracker.where
    got: dict[str, dict[int, float]] = {}
    for raw in log_records(run_file):
        record = Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {item.key or ".".join(item.nested_key): item.value_json for item in record.history.item}
            for key in EXPECTED:
                got.setdefault(key, {})[record.history.step.num] = float(items[key])
    assert got == EXPECTED  # float64 all the way: exact


def test_swanlab_runs_offline_without_a_key_and_its_run_file_holds_the_values(tmp_path, no_credentials):
    pytest.importorskip("swanlab")
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record

    assert tracking.swanlab_mode() == "offline"
    tracker = run_offline("swanlab", tmp_path)
    run_file = only(str(tmp_path / "swanlog" / "run-*" / "run-*.swanlab"))
    assert "swanlab sync" in tracker.where
    got: dict[str, dict[int, float]] = {}
    for raw in log_records(run_file):
        record = Record()
        record.ParseFromString(raw)
        if record.HasField("scalar") and record.scalar.key in EXPECTED:
            got.setdefault(record.scalar.key, {})[record.scalar.step] = record.scalar.value.number
    assert got == EXPECTED  # float64 all the way: exact


def test_a_key_without_a_reachable_server_still_means_offline(monkeypatch, no_credentials):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("SWANLAB_API_KEY", "x" * 21)
    monkeypatch.setattr(tracking, "reachable", lambda host, port=443, timeout=2.0: False)
    assert tracking.wandb_mode() == tracking.swanlab_mode() == "offline"
    monkeypatch.setattr(tracking, "reachable", lambda host, port=443, timeout=2.0: True)
    assert tracking.wandb_mode() == tracking.swanlab_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user's own setting wins
    assert tracking.wandb_mode() is None


def test_without_any_tracker_installed_the_error_names_the_requirements_file(monkeypatch):
    monkeypatch.setattr(tracking, "find_spec", lambda name: None)
    with pytest.raises(PebbleError, match=r"needs wandb, swanlab or tensorboard installed; run pip install -r "
                                          r"requirements-track\.txt"):
        Tracker.start("p", "r", {})
    with pytest.raises(PebbleError, match="unknown tracker 'mlflow'"):
        Tracker.start("p", "r", {}, backend="mlflow")


def test_a_finished_run_refuses_more_values():
    tracker = Tracker("test", "nowhere", lambda values, step: None, lambda: None)
    with tracker:
        tracker.log({"loss": 1.0, "flag": True}, step=1)
    with pytest.raises(PebbleError, match="finished"):
        tracker.log({"loss": 1.0}, step=2)
