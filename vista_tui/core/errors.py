"""The one error of the annotation side: a message meant for a person, one line."""

from __future__ import annotations


class AnnotationError(Exception):
    """The annotations or their config cannot be read or written; the message is one line meant for a person."""
