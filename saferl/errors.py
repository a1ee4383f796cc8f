"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class SafeRLError(Exception):
    """A problem with the user's input (config, paths, ids) rather than a bug in saferl."""
