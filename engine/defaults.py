"""Run defaults and settings keys (defined in spectralx.contract.defaults, the torch-free contract the
plugin imports; re-exported here, where the engine always found them)."""

from .contract.defaults import *  # noqa: F401,F403
from .contract.defaults import __all__  # noqa: F401
