"""Stage 1: pretrain Pebble on {"text"} JSONL (next-token prediction on every token).

    python trainer/train_pretrain.py                       # the demo corpus, demo model size
    torchrun --nproc_per_node 2 trainer/train_pretrain.py  # same, data-parallel
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.lm_dataset import PretrainDataset
from model.common import run_cli
from trainer.config import TrainConfig, parse_config
from trainer.trainer_utils import run_stage


def main() -> None:
    cfg = parse_config(TrainConfig, __doc__, save_weight="pretrain", data_path="dataset/pretrain_demo.jsonl",
                       learning_rate=2e-3, epochs=1, batch_size=32)
    run_stage(cfg, PretrainDataset)


if __name__ == "__main__":
    run_cli(main)
