"""rwsplit: read/write splitting for SQLAlchemy on MySQL/MariaDB.

Writes go to the primary, reads to replicas within a lag bound, and a session that wrote
reads its own writes.
"""

from ._version import __version__
from .errors import RwsplitError, SandboxError, ServerBinariesNotFound

__all__ = ["__version__", "RwsplitError", "SandboxError", "ServerBinariesNotFound"]
