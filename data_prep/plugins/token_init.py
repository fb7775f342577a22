"""ms-swift external plugin (``external_plugins`` in a generated YAML): new user tokens start from distinct rows
drawn from the trained rows' distribution (data_prep/token_init.py) unless the experiment says
``train.tokens_init: none`` (PIGG_TOKEN_INIT=none)."""
import os

from data_prep.token_init import ENV, install

if os.environ.get(ENV, "vocab") == "vocab":
    install()
