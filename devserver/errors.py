"""Mistakes in how the dev server was started: each is one line for the person, not a traceback."""

from __future__ import annotations

import errno
import socket


class StartError(Exception):
    """The dev server cannot start as asked; the message says why and what to do."""


def listen_error(exc: OSError, what: str, host: str, port: int, option: str) -> StartError:
    """A StartError for an address the dev server could not listen on."""
    if exc.errno == errno.EADDRINUSE:
        return StartError(
            f"port {port} on {host} is already in use ({what}); stop what is using it, or pick "
            f"another port with {option}"
        )
    if isinstance(exc, socket.gaierror):
        return StartError(f"cannot listen on {host} ({what}): unknown host name")
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return StartError(f"cannot listen on {host}:{port} ({what}): not an address of this machine")
    if exc.errno == errno.EACCES:
        return StartError(f"not allowed to listen on port {port} ({what}); use a port above 1023")
    return StartError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}")
