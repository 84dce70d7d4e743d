"""Server URLs: parse a configured list, check each server, mask passwords for messages.

Every error names the offending option and never echoes a password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

from .tokens import cluster_id, named_cluster_id

__all__ = ["parse_url_list", "coerce_servers", "mask_url", "mask_key", "cluster_key"]

_MYSQL_BACKENDS = ("mysql", "mariadb")
_URL_START = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def parse_url_list(text: str) -> list[str]:
    """Split a configuration string of URLs (comma and/or whitespace separated) into a list.

    ``parse_url_list(os.environ["REPLICA_URLS"])``; a comma inside a password must be written
    ``%2C``, as in any URL.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_url_list takes a str, got {type(text).__name__}")
    return [part for part in _URL_START.split(text.strip().strip(",")) if part.strip()]


def _coerce_url(value: object, what: str) -> URL:
    """``value`` as a MySQL/MariaDB URL naming a host or socket; errors name ``what``."""
    if isinstance(value, URL):
        url = value
    elif isinstance(value, str):
        try:
            url = sa.make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                f"{what} is not a valid SQLAlchemy URL; expected mysql+pymysql://user:password@host:port/db"
            ) from None
    else:
        raise TypeError(f"{what} must be a URL string or sqlalchemy.URL, got {type(value).__name__}")
    if url.get_backend_name() not in _MYSQL_BACKENDS:
        raise ValueError(
            f"{what} uses {url.get_backend_name()!r}; rwsplit routes MySQL/MariaDB only "
            f"(mysql+pymysql://… or mariadb+pymysql://…)"
        )
    if not url.host and not url.query.get("unix_socket"):
        raise ValueError(f"{what} names no host: {mask_url(url)}")
    return url


def coerce_servers(
    primary: object, replicas: Sequence[object], *, primary_label: str, replica_label: str
) -> tuple[URL, list[URL]]:
    """Parse and check the primary and replica URLs: valid, MySQL/MariaDB, no server twice.

    Errors name the offending option (``primary_label``, ``f"{replica_label} #n"``) and never
    echo a password.
    """
    primary_url = _coerce_url(primary, primary_label)
    replica_urls = [_coerce_url(r, f"{replica_label} #{i + 1}") for i, r in enumerate(replicas)]
    seen = {_server_key(primary_url): primary_label}
    for i, r in enumerate(replica_urls):
        key = _server_key(r)
        if key in seen:
            raise ValueError(f"{replica_label} #{i + 1} ({mask_url(r)}) is the same server as {seen[key]}")
        seen[key] = f"{replica_label} #{i + 1}"
    return primary_url, replica_urls


def mask_key(key: object) -> str:
    """A user-supplied key for an error message, with any URL password hidden."""
    text = str(key)
    if "://" in text:
        try:
            return mask_url(sa.make_url(text))
        except (ArgumentError, ValueError):
            return "<a URL>"
    return text[:80]


def mask_url(url: URL) -> str:
    """The URL as text with its password hidden (for messages, logs and status)."""
    return url.render_as_string(hide_password=True)


def _server_key(url: URL) -> tuple[str, int, str]:
    """What identifies a server: host and port, or the socket of a localhost URL."""
    host = (url.host or "localhost").lower()
    if host == "localhost" and url.query.get("unix_socket"):
        return (host, 0, str(url.query["unix_socket"]))
    return (host, int(url.port or 3306), "")


def cluster_key(cluster: object, primary_url: URL) -> str:
    """The token cluster id: of the app's ``cluster=`` name, else of the primary's host:port/database."""
    if cluster is None:
        host = primary_url.host or str(primary_url.query.get("unix_socket") or "localhost")
        return cluster_id(host, int(primary_url.port or 3306), primary_url.database or "")
    if not isinstance(cluster, str):
        raise TypeError(f"cluster must be a str naming the cluster, got {type(cluster).__name__}")
    if not cluster.strip() or len(cluster) > 200 or not cluster.isprintable():
        raise ValueError(
            f"cluster must be a non-empty printable name of at most 200 characters, got {cluster!r}"
        )
    return named_cluster_id(cluster)
