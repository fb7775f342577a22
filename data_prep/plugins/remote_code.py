"""ms-swift external plugin (``external_plugins`` in a generated YAML): swift's model loaders run code shipped
in a model folder only where the experiment says ``model.trust_remote_code: true`` (PIGG_TRUST_REMOTE_CODE=1).
See data_prep/procenv.py."""
from data_prep.procenv import set_trust_remote_code, trust_from_env

set_trust_remote_code(trust_from_env())
