"""Errors that reach users and admins.

Their ``str()`` is shown as is on the hub's spawn page and by the CLI, so it says
in plain words what failed and what to do next, and never contains a secret.
"""


class EnerTEFError(Exception):
    """Base class of every error this package raises on purpose."""


class ProvisioningError(EnerTEFError):
    """Creating or repairing a user's resources failed; nothing half-made was kept."""


class ServiceUnavailableError(ProvisioningError):
    """PostgreSQL or MinIO could not be reached."""


class ConfigurationError(EnerTEFError):
    """A required setting is missing or invalid; the message names the setting."""
