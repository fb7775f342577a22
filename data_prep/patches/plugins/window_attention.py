"""ms-swift external plugin (``external_plugins`` in a generated YAML): Qwen2.5-VL's window attention batched by window length (model.batched_window_attention); the registry entry
``window_attention`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("window_attention")
