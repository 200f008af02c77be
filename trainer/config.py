"""The training stages' options, one dataclass per stage whose fields are the command-line flags (validated, with
one line naming the flag for a value no run can use), and the flags other scripts share: which base to load, and
the device and dtype to run on."""
import argparse
import dataclasses
import math
import re
from dataclasses import dataclass

from model.common import PebbleError
from trainer.runtime import DTYPES, resolve_device
from trainer.tracking import installed_backend


@dataclass
class TrainConfig:
    """Options shared by the training stages; each field is also a command-line flag of the same name."""

    save_dir: str = "out"  # where weights, checkpoints and logs go
    save_weight: str = "pretrain"  # artifact name: out/{save_weight}_{hidden_size}.safetensors
    epochs: int = 1
    batch_size: int = 32  # samples per step per process
    learning_rate: float = 5e-4  # peak LR, reached after warmup, then cosine decay to lr_min_ratio * peak
    lr_min_ratio: float = 0.1
    warmup_ratio: float = 0.03  # share of all optimizer steps spent warming up
    weight_decay: float = 0.0
    device: str = "auto"  # auto: cuda if available, else cpu
    dtype: str = "auto"  # auto|bfloat16|float16|float32; auto measures whether bf16 matmuls are faster here
    accumulation_steps: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0
    log_interval: int = 10  # optimizer steps between log lines
    save_interval: int = 200  # optimizer steps between checkpoints
    hidden_size: int = 256
    num_hidden_layers: int = 8
    max_seq_len: int = 340  # longer samples are truncated (and counted)
    data_path: str = "dataset/pretrain_demo.jsonl"
    tokenizer_path: str = "model"
    from_weight: str = "none"  # start from out/{from_weight}_{hidden_size}.*, or "none" for random init
    from_resume: int = 0  # 1: continue from the last checkpoint of this run
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs); for smoke tests
    seed: int = 42
    skip_bad_lines: int = 0  # 1: leave out malformed JSONL lines (and list them) instead of stopping
    # 1: torch.compile the training forward: compiling takes a while (see the README), so it pays off on long
    # runs and GPUs, not on the short demo jobs. --use_compile is MiniMind's name for it.
    compile: int = 0
    use_compile: int = 0
    # MiniMind's experiment tracking flags: 1 also logs the metrics to wandb, swanlab or TensorBoard (the first
    # one installed; offline when there is no network). pip install -r requirements-track.txt
    use_wandb: int = 0
    wandb_project: str = "Pebble"
    # Accepted so that MiniMind command lines run; data is tokenized up front and batches are built in the main
    # process, so no loader workers are started.
    num_workers: int = 0

    def validate(self) -> None:
        """Reject values no run can use, with the flag's name."""
        for name in ("epochs", "batch_size", "accumulation_steps", "max_seq_len", "log_interval", "save_interval"):
            if getattr(self, name) <= 0:
                raise PebbleError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_steps < 0:
            raise PebbleError(f"--max_steps must be 0 (all epochs) or positive, got {self.max_steps}")
        check_range("learning_rate", self.learning_rate, low=0, low_open=True, high=1)
        check_range("lr_min_ratio", self.lr_min_ratio, low=0, high=1)
        check_range("warmup_ratio", self.warmup_ratio, low=0, high=1)
        check_range("weight_decay", self.weight_decay, low=0)
        check_range("grad_clip", self.grad_clip, low=0)
        if self.dtype not in DTYPES:
            raise PebbleError(f"--dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")
        resolve_device(self.device)
        if self.use_wandb:
            installed_backend()  # a missing tracker stops the run now, not after the data and model are loaded


@dataclass
class LoRATrainConfig(TrainConfig):
    """TrainConfig plus the adapter's shape and where it starts from (trainer/train_lora.py)."""

    lora_name: str = "lora_identity"  # adapter name; file out/lora/{lora_name}_{hidden}.safetensors
    rank: int = 8
    alpha: float = 0.0  # scale is alpha / rank; 0 means alpha = rank (scale 1, as MiniMind's adapters)
    # "all" (every linear layer of the blocks), "square" (in == out: q_proj and o_proj under GQA, MiniMind's rule),
    # or names such as q_proj,v_proj. "all" is the default: on the demo adapters it kept general chat far better
    # at the same task quality (README, "The demo adapters").
    targets: str = "all"
    # Which decoder blocks get adapters: "all", or a range such as 4-7 (0-based). Gradients flow back only as far
    # as the lowest adapted block, so leaving out the lower blocks also saves their backward pass.
    lora_blocks: str = "all"
    lora_dropout: float = 0.0
    preset_lora: str = "none"  # merge out/lora/{preset_lora}_{hidden} into the base first, train a new one on top
    lora_checkpoint: str = "none"  # an adapter file to continue training
    probe_count: int = 2  # prompts answered before and after training (from the held-out file if there is one)
    # General chat mixed into the task data, as a share of the task's size ("none" or 0 to turn off). Replaying
    # what the base was tuned on keeps the adapter from overwriting everything else the base does. The default is
    # a sample of the shipped base's SFT mix with every everyday-chat prompt in it (dataset/build_base_data.py).
    replay_data: str = "dataset/replay_chat.jsonl"
    replay_ratio: float = 0.5
    # Replayed conversations containing this text are left out: the demo base's answers about itself, which an
    # identity adapter is meant to change, not keep ("" keeps every conversation).
    replay_exclude: str = "Pebble"
    # What the replayed replies teach: "kl" pulls the adapted model's next-token distribution towards the
    # frozen base's own (self-distillation: keep what the base does); "ce" fits the replayed text itself.
    replay_loss: str = "kl"
    # With --replay_loss kl: weight of a replayed token's KL against a task token's CE. Fewer replayed rows with a
    # larger weight kept general chat as well as more rows with a smaller one, for less compute (README).
    replay_weight: float = 8.0
    # The first replay_lead_tokens tokens of each replayed reply count replay_lead_weight times in the KL term:
    # they decide what a reply is about, so they are where an identity adapter would start answering unrelated
    # requests as its persona (README, "Keeping the identity adapter out of other questions").
    replay_lead_tokens: int = 8
    replay_lead_weight: float = 3.0

    def validate(self) -> None:
        super().validate()
        if self.rank <= 0:
            raise PebbleError(f"--rank must be positive, got {self.rank}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.lora_name):
            raise PebbleError(f"--lora_name {self.lora_name!r} must be a plain name of letters, digits, _ and - "
                              "(the adapter goes to out/lora/{lora_name}_{hidden}.safetensors)")
        check_range("alpha", self.alpha, low=0)
        check_range("lora_dropout", self.lora_dropout, low=0, high=0.9)
        check_range("replay_ratio", self.replay_ratio, low=0)
        check_range("replay_weight", self.replay_weight, low=0)
        check_range("replay_lead_weight", self.replay_lead_weight, low=0)
        if self.replay_lead_tokens < 0:
            raise PebbleError(f"--replay_lead_tokens must be 0 (none) or positive, got {self.replay_lead_tokens}")
        if self.replay_loss not in ("kl", "ce"):
            raise PebbleError(f"--replay_loss must be kl or ce, got {self.replay_loss!r}")


def check_range(flag: str, value: float, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """A numeric flag must be a finite number in [low, high] (or (low, high] with low_open)."""
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        interval = ("(" if low_open else "[") + f"{low}, " + (f"{high}]" if math.isfinite(high) else "inf)")
        raise PebbleError(f"--{flag} must be a finite number in {interval}, got {value}")


SWITCHES = ("from_resume", "compile", "use_compile", "use_wandb", "skip_bad_lines")  # 0/1 flags


def parse_config(cls: type, description: str, **defaults) -> TrainConfig:
    """Map the dataclass fields of cls onto argparse flags (with per-stage defaults) and parse argv."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        default = defaults.get(f.name, f.default)
        switch = {"nargs": "?", "const": 1} if f.name in SWITCHES else {}  # MiniMind writes them bare: --use_wandb
        parser.add_argument(f"--{f.name}", type=type(f.default), default=default,
                            help=f.metadata.get("help", f"(default: {default})"), **switch)
    cfg = cls(**vars(parser.parse_args()))
    cfg.compile = cfg.compile or cfg.use_compile
    cfg.validate()
    return cfg


def add_device_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--device and --dtype as the trainers take them (trainer.runtime resolves them)."""
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ... "
                                                         "(default: auto)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="autocast dtype; auto uses bf16 where it measures faster than fp32 (default: auto)")
    return parser


def base_model_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags that pick a trained base: --save_dir --weight --hidden_size
    --tokenizer_path (for the scripts that load one)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save_dir", default="out")
    parser.add_argument("--weight", default="full_sft", help="out/{weight}_{hidden_size}.safetensors or .pth")
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--tokenizer_path", default="model")
    return parser
