"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class SafeRLError(Exception):
    """A problem with the user's input (config, paths, ids) rather than a bug in saferl."""


def os_error_text(exc: OSError) -> str:
    """An OSError as one line: its reason and the file it names (unwritable run directory, full disk...)."""
    return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
