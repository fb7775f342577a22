#!/usr/bin/env bash
# Stage 4b: one model for all test users. Per fold, one LoRA on the union of every test user's fold-f
# training samples, each prompt starting with its user's tag (special token <user_U> / text "User U:"),
# and the pooled control (no tag); each user's hold-out evaluated with its tag. K runs per kind instead of
# users x K. Resumable (DONE markers). Summaries: runs/<exp>/user_tokens_<kind>/{user_U_summary,overall}.json
# Usage: bash scripts/4b_finetune_user_tokens.sh GPUS [--kind special text pooled] [--fold F] [--config EXP] [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" swift_configs.tokens "$@"
GPUS=$1; shift
set -x
"$PY" -m swift_configs.tokens --gpus "$GPUS" "$@"
