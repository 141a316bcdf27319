"""Errors the command-line tools report as one line (``error: <message>``) instead of a traceback."""


class FwiError(Exception):
    """A user-facing error: bad input, bad config, missing files. The message names the file or key."""


class ConfigError(FwiError):
    """Unknown key, wrong type or missing file in a config or an override."""


class DataError(FwiError):
    """Invalid data on disk: wrong shape/dtype, truncated file, unpaired file, NaN/Inf, empty directory."""
