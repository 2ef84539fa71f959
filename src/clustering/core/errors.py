"""Errors a user can cause. Each carries one readable sentence."""


class ClusteringError(Exception):
    """Base class for errors that end in one clear sentence and a non-zero exit."""


class InputContractError(ClusteringError):
    """An input file or table breaks its data contract (missing column, wrong type, ...)."""


class ConfigError(ClusteringError):
    """A configuration value is missing or invalid."""
