"""Stage 2: supervised fine-tuning of every weight on {"conversations"} JSONL (loss on assistant replies).

    python trainer/train_full_sft.py                        # from out/pretrain_{hidden}.*
    torchrun --nproc_per_node 2 trainer/train_full_sft.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.lm_dataset import SFTDataset
from model.common import run_cli
from trainer.config import TrainConfig, parse_config
from trainer.trainer_utils import run_stage


def main() -> None:
    cfg = parse_config(TrainConfig, __doc__, save_weight="full_sft", data_path="dataset/sft_demo.jsonl",
                       from_weight="pretrain", learning_rate=1e-3, epochs=2, batch_size=32)
    run_stage(cfg, SFTDataset)


if __name__ == "__main__":
    run_cli(main)
