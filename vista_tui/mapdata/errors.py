"""Errors a person can act on: each message is one line saying what is wrong and what to do."""

from __future__ import annotations


class MapError(Exception):
    """A map cannot be read; str(error) is the one line shown to the user."""


class MapNotFoundError(MapError):
    """No map at the given place."""


class MapCorruptError(MapError):
    """A map file is missing, truncated, or does not parse."""


class SchemaVersionError(MapError):
    """The map was written by a newer (or unknown) version of the format."""
