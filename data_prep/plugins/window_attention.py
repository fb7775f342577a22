"""ms-swift external plugin (``external_plugins`` in a generated YAML): Qwen2.5-VL's window attention batched
by window length (data_prep/window_attention.py) unless the experiment says ``model.batched_window_attention:
false`` (PIGG_BATCHED_WINDOWS=0)."""
import os

from data_prep.window_attention import ENV, apply

apply(os.environ.get(ENV, "1") == "1")
