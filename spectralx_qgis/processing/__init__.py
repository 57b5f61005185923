"""The Processing provider: one algorithm per module, each with its `P_*` parameter names and its help text
beside it (as EnMAP-Box's `enmapboxprocessing` does)."""
