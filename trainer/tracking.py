"""Experiment tracking for `--use_wandb 1 --wandb_project NAME`: wandb, else swanlab, else TensorBoard.

The first of the three that is installed records the run (`pip install -r requirements-track.txt` installs
TensorBoard, which needs no account and no network). wandb and swanlab run online only when the service answers
and an API key is set (WANDB_API_KEY or a `wandb login` entry in ~/.netrc; SWANLAB_API_KEY); otherwise they
write an offline run under SAVE_DIR to upload later (`wandb sync DIR`, `swanlab sync DIR`), so a training job
never waits on the network or on a login prompt. WANDB_MODE / SWANLAB_MODE, when set, decide instead.

    tracker = Tracker.start("Pebble-LoRA", "lora_identity_256", config)
    tracker.log({"loss": 2.31, "lr": 5e-4}, step=10)
    tracker.finish()
"""
import json
import netrc
import os
import socket
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from model.common import PebbleError

BACKENDS = ("wandb", "swanlab", "tensorboard")  # tried in this order by backend="auto"
REQUIREMENTS = "requirements-track.txt"
WANDB_HOST, SWANLAB_HOST = "api.wandb.ai", "api.swanlab.cn"


def installed_backend(choice: str = "auto") -> str:
    """The tracker to use: choice itself if installed, or for "auto" the first of BACKENDS that is."""
    if choice != "auto" and choice not in BACKENDS:
        raise PebbleError(f"unknown tracker {choice!r}; choose auto, {', '.join(BACKENDS)}")
    for name in BACKENDS if choice == "auto" else (choice,):
        if find_spec(name) is not None:
            return name
    wanted = "wandb, swanlab or tensorboard" if choice == "auto" else choice
    raise PebbleError(f"--use_wandb 1 needs {wanted} installed; run pip install -r {REQUIREMENTS} (TensorBoard, "
                      "works offline) or pip install wandb")


def reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to host opens within timeout (no network, no DNS, a firewall: False)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def netrc_has(host: str) -> bool:
    """Whether ~/.netrc (or $NETRC) holds a login for host, as `wandb login` writes it."""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> Optional[str]:
    """None when WANDB_MODE decides; else online with a key and a reachable server, offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL", f"https://{WANDB_HOST}")).hostname or WANDB_HOST
    has_key = bool(os.environ.get("WANDB_API_KEY")) or netrc_has(host)
    return "online" if has_key and reachable(host) else "offline"


def swanlab_mode() -> Optional[str]:
    """None when SWANLAB_MODE decides; else online with SWANLAB_API_KEY and a reachable server, offline otherwise."""
    if os.environ.get("SWANLAB_MODE"):
        return None
    return "online" if os.environ.get("SWANLAB_API_KEY") and reachable(SWANLAB_HOST) else "offline"


def scalars(record: dict) -> dict[str, float]:
    """The numeric entries of a metrics record, without its step (the tracker's own x axis)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """One tracked run: log() sends a metrics record at a step, finish() closes the run (idempotent)."""

    def __init__(self, backend: str, where: str, log: Callable[[dict[str, float], int], None],
                 finish: Callable[[], None]):
        self.backend, self.where = backend, where
        self._log, self._finish, self.finished = log, finish, False

    @classmethod
    def start(cls, project: str, run_name: str, config: dict, save_dir: str = "out",
              backend: str = "auto") -> "Tracker":
        """Open a run of `project` named run_name with its config, with the first installed backend."""
        name = installed_backend(backend)
        starter = {"wandb": _start_wandb, "swanlab": _start_swanlab, "tensorboard": _start_tensorboard}[name]
        try:
            tracker = starter(project, run_name, config, Path(save_dir))
        except PebbleError:
            raise
        except Exception as e:  # the library's own message says what it did not like (project name, login, ...)
            raise PebbleError(f"{name} could not start a run for project {project!r}: {e}") from e
        print(f"tracking: {name}, {tracker.where}")
        return tracker

    def log(self, record: dict, step: int) -> None:
        """Record the numeric values of record (e.g. loss, lr, grad_norm) at optimizer step `step`."""
        if self.finished:
            raise PebbleError(f"this {self.backend} run is finished; start a new Tracker to log more")
        self._log(scalars(record), step)

    def finish(self) -> None:
        """Flush and close the run; calling it again does nothing."""
        if not self.finished:
            self.finished = True
            self._finish()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def _start_wandb(project: str, run_name: str, config: dict, save_dir: Path) -> Tracker:
    import wandb

    mode = wandb_mode()
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, name=run_name, config=config, dir=str(save_dir), mode=mode)
    where = run.url if run.url else f"offline run in {run.dir.removesuffix('/files')}; upload it with wandb sync"

    def finish() -> None:
        run.finish()
        wandb.teardown()  # finish() returns before wandb's service has written the run; this waits for it

    return Tracker("wandb", where, lambda values, step: run.log(values, step=step), finish)


def _start_swanlab(project: str, run_name: str, config: dict, save_dir: Path) -> Tracker:
    import swanlab

    mode = swanlab_mode()
    log_dir = save_dir / "swanlog"
    log_dir.mkdir(parents=True, exist_ok=True)
    run = swanlab.init(project=project, name=run_name, config=config, log_dir=str(log_dir), mode=mode)
    where = f"{mode or os.environ['SWANLAB_MODE']} run in {log_dir}"
    if mode == "offline":
        where += "; upload it with swanlab sync"
    return Tracker("swanlab", where, lambda values, step: run.log(values, step=step), run.finish)


def _start_tensorboard(project: str, run_name: str, config: dict, save_dir: Path) -> Tracker:
    from torch.utils.tensorboard import SummaryWriter

    log_dir = save_dir / "runs" / project / f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}"
    writer = SummaryWriter(str(log_dir))
    writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def log(values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            writer.add_scalar(key, value, step)

    return Tracker("tensorboard", f"{log_dir}; view it with tensorboard --logdir {save_dir / 'runs'}", log,
                   writer.close)
