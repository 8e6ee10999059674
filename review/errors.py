"""What the review refuses to answer, whoever asks (the pages, the API, the command line)."""

from __future__ import annotations


class InvalidQuery(ValueError):
    """A filter, sort, page, period or path the review cannot read. HTTP answers it as a 422
    problem with ``code`` (:mod:`receiver.problems`); the command line prints ``detail``."""

    def __init__(self, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.title = title
        self.detail = detail
