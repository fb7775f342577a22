"""ms-swift external plugin (``external_plugins`` in a generated YAML): the frozen vision tower's features kept for later epochs (train.vision_cache_gib); the registry entry
``vision_cache`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("vision_cache")
