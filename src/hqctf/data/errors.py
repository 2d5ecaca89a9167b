"""Errors raised while reading data."""


class DataError(ValueError):
    """A dataset file is missing or inconsistent; the message is one line and names the file."""
