"""TUI test isolation: no user config (triage statuses, author) leaks into a test."""

from tests.helpers.isolation import no_user_config

__all__ = ["no_user_config"]
