"""Band-mapping advice in the words of whoever reads it (moved to spectralx.contract.errors, the
torch-free contract the plugin imports; re-exported here, where the engine always found it)."""

from ..contract.errors import (  # noqa: F401
    _FLAG_PHRASES,
    _MARK,
    AUDIENCES,
    REMEDIES,
    Advice,
    explain,
    render,
    translate,
)

__all__ = ["AUDIENCES", "REMEDIES", "Advice", "explain", "render", "translate"]
