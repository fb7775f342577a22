#!/usr/bin/env bash
# Stage 3: eval a trained checkpoint on every test user (PIGG's "Global" row).
# CKPT: a checkpoint folder or a run folder (runs/<exp>/global_full); --lora: CKPT is an adapter on the base model.
# Usage: bash scripts/3_eval_checkpoint.sh GPUS CKPT [--lora] [--config EXP] [--users 1 2 3] [--name NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:?usage: $0 GPUS CKPT [--lora] [--config EXP] [--users ...]}; shift
CKPT=${1:?usage: $0 GPUS CKPT [--lora] [--config EXP] [--users ...]}; shift
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m eval.users --devices "$GPUS" --checkpoint "$CKPT" "$@"
