"""ms-swift external plugin (``external_plugins`` in a generated YAML): new user tokens start from rows drawn from the trained rows' distribution (train.tokens_init); the registry entry
``token_init`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("token_init")
