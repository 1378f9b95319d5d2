"""Whether a database server answers at all, asked in seconds before any driver is (no MLflow import).

MLflow retries a ``postgresql://`` tracking URI that refuses connections for about two minutes before it
says so, and a driver waits for the operating system's TCP timeout where a host never answers; a TCP
connection to the server's address, with a timeout, tells both apart from a server that answers.
"""

from __future__ import annotations

import socket
import urllib.parse

__all__ = ["DATABASE_PORTS", "database_unreachable", "redact_url"]

#: The default port of each database a tracking URI or a queue storage may name.
DATABASE_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


def redact_url(url: str) -> str:
    """Hide a password in ``scheme://user:password@host``."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url
    return url


def database_unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at the database server of ``url`` (``postgresql+psycopg://user@host:port/db``):
    "Connection refused", an unknown host, "no answer within 5 s"; None when something answers, or when
    ``url`` is not a database server's (SQLite, a journal file) or reaches it through a local socket."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in DATABASE_PORTS or not parts.hostname or parts.hostname.startswith("/"):
        return None
    if "host=" in parts.query:  # libpq's own host (a socket folder, or several hosts): the driver's to reach
        return None
    try:
        port = parts.port or DATABASE_PORTS[scheme]
    except ValueError:
        return None  # a malformed port: the driver says so
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except socket.gaierror as exc:
        return f"unknown host {parts.hostname!r} ({exc.strerror})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
