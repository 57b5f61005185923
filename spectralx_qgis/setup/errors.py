"""Errors of the plugin's own machinery (installer, downloads): one line, what and what to do."""


class InstallError(Exception):
    """The dependency installer could not do its job; the message says why and what to do."""


class InstallCancelled(Exception):
    """The user cancelled; nothing half-installed was left behind."""
