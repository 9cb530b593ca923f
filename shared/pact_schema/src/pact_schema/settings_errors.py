"""Configuration errors as one line per problem, never with the value that was given.

Both services' settings classes set ``hide_input_in_errors=True``, so even ``str()`` of their
``ValidationError`` shows no ``input_value`` (for a model-level check pydantic would otherwise
print the whole environment it read, tokens and keys included). :func:`settings_error_lines`
goes one step further for the ``serve``/``migrate`` commands: it renders each error as
``PREFIX_FIELD: message`` from pydantic's structured errors with the input, context and links
left out, and splits a check that reports several problems into one line each.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["settings_error_lines"]

_PREFIXES = ("Value error, ", "Assertion failed, ")


def settings_error_lines(exc: ValidationError, env_prefix: str) -> list[str]:
    """One line per problem; a field's problem starts with its environment variable."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        message = str(error["msg"])
        for prefix in _PREFIXES:
            message = message.removeprefix(prefix)
        location = [str(part) for part in error["loc"]]
        # A nested model's field (``stripe`` → ``currency``) is one variable: ..._STRIPE_CURRENCY;
        # list positions (``provider_keys`` → 0) are not part of the name.
        path = [part for part in location if not part.isdigit()]
        name = f"{env_prefix}{'_'.join(path).upper()}" if path else None
        for line in message.splitlines():
            if not line.strip():
                continue
            lines.append(f"{name}: {line}" if name and name not in line else line)
    return lines or [f"invalid {env_prefix}* configuration"]
