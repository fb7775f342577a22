"""ms-swift external plugin (``external_plugins`` in a generated YAML): training batches padded to a multiple of train.pad_to_multiple tokens on CUDA; the registry entry
``pad_multiple`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("pad_multiple")
