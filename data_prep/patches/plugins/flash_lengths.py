"""ms-swift external plugin (``external_plugins`` in a generated YAML): int lengths for flash-attn-4's variable-length kernel, where flash-attn-4 is installed; the registry entry
``flash_lengths`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("flash_lengths")
