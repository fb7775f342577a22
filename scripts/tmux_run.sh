#!/usr/bin/env bash
# Start any launcher in a detached tmux session, its output teed to runs/logs/, so it survives a closed terminal.
# Usage: bash scripts/tmux_run.sh NAME -- bash scripts/4_finetune_person.sh 0,1,2,3 --lora
set -euo pipefail
source "$(dirname "$0")/common.sh"
case "${1:-}" in -h|--help) usage "$0" ""; exit 0 ;; esac
NAME=${1:?usage: $0 NAME -- <launcher ...>}; shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: $0 NAME -- <launcher ...>" >&2; exit 2; }
command -v tmux >/dev/null || { echo "tmux not found: apt-get install tmux" >&2; exit 2; }
if tmux has-session -t "$NAME" 2>/dev/null; then echo "tmux session '$NAME' already exists: tmux attach -t $NAME" >&2; exit 2; fi
mkdir -p "$ROOT/runs/logs"
LOG="$ROOT/runs/logs/${NAME}-$(date +%Y%m%d_%H%M%S).log"
CMD=$(printf '%q ' "$@")
tmux new-session -d -s "$NAME" -c "$PWD" "set -o pipefail; $CMD 2>&1 | tee -a '$LOG'; echo \"[exit \$?] log: $LOG\"; exec bash"
echo "started '$NAME': $CMD"
echo "attach: tmux attach -t $NAME    (detach: Ctrl-b d)"
echo "log:    $LOG"
