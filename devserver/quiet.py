"""Log hygiene for the dev server: aiohttp's HTTP server logs what went wrong with a request (the
message and the exception's type), never the request's bytes, which its exceptions quote."""

from __future__ import annotations

import logging


class WithoutContents(logging.Filter):
    """Keeps a record's message template and its exception's type; drops arguments and tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = str(record.msg) + (f" ({type(exc).__name__})" if exc is not None else "")
        record.args = None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def server_logger() -> logging.Logger:
    """The logger the dev server's aiohttp request handlers use (`AppRunner(logger=...)`)."""
    logger = logging.getLogger("devserver.http")
    if not any(isinstance(f, WithoutContents) for f in logger.filters):
        logger.addFilter(WithoutContents())
    return logger
