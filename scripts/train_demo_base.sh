#!/usr/bin/env bash
# Rebuild the demo base that ships in out/: data -> tokenizer -> pretrain -> full SFT -> measurements.
# About an hour on 2 CPU cores. Run from anywhere:  bash scripts/train_demo_base.sh
# Set REBUILD_DATA=1 to regenerate the demo corpora first (needs: pip install -r requirements-data.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SIZE=(--hidden_size 256 --num_hidden_layers 8)

if [ "${REBUILD_DATA:-0}" = 1 ]; then
  $PY dataset/build_demo_data.py
  $PY dataset/build_lora_data.py all
fi
$PY trainer/train_tokenizer.py --data_path dataset/pretrain_demo.jsonl dataset/sft_demo.jsonl
$PY trainer/train_pretrain.py "${SIZE[@]}" --epochs 2 --batch_size 32 --learning_rate 2e-3 --max_seq_len 340
$PY trainer/train_full_sft.py "${SIZE[@]}" --epochs 2 --batch_size 32 --learning_rate 5e-4 --max_seq_len 340
$PY scripts/measure_base.py
