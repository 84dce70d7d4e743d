"""Every SQLAlchemy private attribute rwsplit reads, in one place, each failing loudly.

SQLAlchemy may rename private attributes in any release. Each accessor here names what it
reads; when the attribute is missing it either raises :class:`SQLAlchemyChanged` or answers
the safe way (toward the primary), and ``tests`` check that every attribute still exists on
the installed SQLAlchemy.
"""

from __future__ import annotations

__all__ = ["SQLAlchemyChanged"]


class SQLAlchemyChanged(RuntimeError):
    """A private SQLAlchemy attribute rwsplit relies on is gone: upgrade rwsplit or pin SQLAlchemy."""


# ------------------------------------------------------------------ statements (classification)


# ------------------------------------------------------------------ sessions and engines
