"""What an error raised inside nurseries is, once the exception groups around it are taken off."""

from __future__ import annotations


def sole_error(error: BaseException) -> BaseException:
    """The one error inside nested one-error groups: what a store's or a server's nursery wraps
    it in. A group of several errors is returned as it is."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
