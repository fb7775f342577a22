# Sourced by every launcher: the project on PYTHONPATH, offline hubs, huge pages for large CPU tensors, and the
# launcher's --help. The command runs where the user stands, so relative paths (--config, --set paths.*=,
# checkpoints) mean what they mean in the user's shell.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

# usage LAUNCHER MODULE [ARGS...]: the launcher's header comment, then the Python entry point's own options
usage() {
  sed -n '2,/^set -/p' "$1" | grep '^#' | sed 's/^# \{0,1\}//'
  if [ -n "${2:-}" ]; then echo; echo "Options of python -m $2 (all passed through):"; "$PY" -m "$2" --help | sed -n '/^options:/,$p' | tail -n +2; fi
}

# help_or_first LAUNCHER MODULE "$@": --help / -h anywhere prints the usage and exits 0; a missing first
# argument (GPUS) is a usage error (exit 2)
help_or_first() {
  local launcher=$1 module=$2; shift 2
  for arg in "$@"; do
    case "$arg" in -h|--help) usage "$launcher" "$module"; exit 0 ;; esac
  done
  if [ $# -eq 0 ]; then usage "$launcher" "" >&2; exit 2; fi
}
