#!/usr/bin/env bash
# The Vanilla / Global / Global+Personalized table (Markdown + CSV) and plots, from result files only.
# Usage: bash scripts/6_report.sh [--config EXP]
set -euo pipefail
source "$(dirname "$0")/common.sh"
set -x
"$PY" -m eval.report "$@"
