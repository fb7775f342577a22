#!/usr/bin/env bash
# Stage 4b: one model for all test users. Per fold, one LoRA on the union of every test user's fold-f
# training samples, each prompt starting with its user's tag (special token <user_U> / text "User U:"),
# and the pooled control (no tag); each user's hold-out evaluated with its tag. K runs per kind instead of
# users x K. Resumable (DONE markers). Summaries: runs/<exp>/user_tokens_<kind>/{user_U_summary,overall}.json
# Usage: bash scripts/4b_finetune_user_tokens.sh GPUS [--kind special text pooled] [--fold F] [--config EXP] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:?usage: $0 GPUS (cpu | 0 | 0,1,2,3) [--kind special text pooled] [--config EXP]}; shift
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m swift_configs.tokens --gpus "$GPUS" "$@"
