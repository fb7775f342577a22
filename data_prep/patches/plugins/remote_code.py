"""ms-swift external plugin (``external_plugins`` in a generated YAML): swift's loaders run a model folder's own code only where model.trust_remote_code is true; the registry entry
``remote_code`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("remote_code")
