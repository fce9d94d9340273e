"""Errors that the generic views turn into answers without knowing who raised them."""

from __future__ import annotations


class RateLimited(Exception):
    """Too many requests of one kind: the views answer 429 with `Retry-After: retry_after`.

    `message` is translated and says when to try again; apps subclass this for their limits.
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, int(retry_after))
