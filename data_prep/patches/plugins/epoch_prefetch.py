"""ms-swift external plugin (``external_plugins`` in a generated YAML): the next epoch's batches made while this epoch trains (train.epoch_prefetch); the registry entry
``epoch_prefetch`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("epoch_prefetch")
