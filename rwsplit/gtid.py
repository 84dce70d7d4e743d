"""GTID positions of MariaDB (``D-S-N`` lists) and MySQL (``uuid:1-N`` sets) as comparable values.

A :class:`Position` maps a replication domain (MariaDB domain id, MySQL source uuid) to the
highest transaction number known in it. Comparisons are per domain, which is all a router needs:
"has this replica applied everything this position names?".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["Position", "parse_mariadb", "parse_mysql"]

_MARIADB_GTID = re.compile(r"^\s*(\d{1,10})-(\d{1,10})-(\d{1,20})\s*$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MAX_SEQ = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Position:
    """Highest transaction number per domain; ``servers`` keeps MariaDB's server ids for rendering."""

    seqs: Mapping[str, int] = field(default_factory=dict)
    servers: Mapping[str, int] = field(default_factory=dict)
    flavor: str = "mariadb"

    def __iter__(self) -> Iterator[str]:
        return iter(self.seqs)

    def __bool__(self) -> bool:
        return bool(self.seqs)

    def covers(self, other: Position) -> bool:
        """True if this position has applied everything ``other`` names."""
        mine = self.seqs
        for d, n in other.seqs.items():  # noqa: SIM110 (a generator costs a frame per domain: per causal read)
            if mine.get(d, -1) < n:
                return False
        return True

    def behind(self, other: Position) -> int:
        """How many of ``other``'s transactions this position lacks (per-domain gaps, summed)."""
        mine = self.seqs
        return sum(max(0, n - mine.get(d, 0)) for d, n in other.seqs.items())

    def within(self, bound: Position) -> Position:
        """Only ``bound``'s domains, each capped at ``bound``'s number.

        What a replica has beyond its primary (a leftover or local domain, a diverged sequence)
        is nothing another replica will ever apply: waiting for it could only time out.
        """
        theirs = bound.seqs
        for d, n in self.seqs.items():
            if d not in theirs or n > theirs[d]:
                break
        else:
            return self
        seqs: dict[str, int] = {}
        servers: dict[str, int] = {}
        for d, n in self.seqs.items():
            if d not in theirs:
                continue
            source = self.servers if n <= theirs[d] else bound.servers
            seqs[d] = min(n, theirs[d])
            if d in source:
                servers[d] = source[d]
        return Position(seqs, servers, self.flavor)

    def merge(self, other: Position) -> Position:
        """The later of the two, domain by domain."""
        if not other.seqs:
            return self
        if not self.seqs:
            return other
        seqs = dict(self.seqs)
        servers = dict(self.servers)
        for d, n in other.seqs.items():
            if n > seqs.get(d, -1):
                seqs[d] = n
                if d in other.servers:
                    servers[d] = other.servers[d]
        return Position(seqs, servers, self.flavor)

    def __str__(self) -> str:
        if self.flavor == "mysql":
            return ",".join(f"{d}:1-{n}" for d, n in sorted(self.seqs.items()))
        return ",".join(f"{d}-{self.servers.get(d, 0)}-{n}" for d, n in sorted(self.seqs.items()))


def parse_mariadb(text: str | None) -> Position:
    """Parse ``@@gtid_binlog_pos`` / ``@@gtid_slave_pos`` / ``@@last_gtid`` (``D-S-N[,…]``)."""
    if not text or not text.strip():
        return Position()
    seqs: dict[str, int] = {}
    servers: dict[str, int] = {}
    for part in text.split(","):
        m = _MARIADB_GTID.match(part)
        if m is None:
            raise ValueError(f"not a MariaDB GTID: {part.strip()[:60]!r} (expected domain-server-sequence)")
        domain, server, seq = m.group(1), int(m.group(2)), int(m.group(3))
        if int(domain) > 2**32 - 1 or server > 2**32 - 1 or seq > _MAX_SEQ:
            raise ValueError(f"GTID number out of range: {part.strip()[:60]!r}")
        if seq >= seqs.get(domain, -1):
            seqs[domain] = seq
            servers[domain] = server
    return Position(seqs, servers, "mariadb")


def parse_mysql(text: str | None, *, contiguous: bool = False) -> Position:
    """Parse a MySQL GTID set (``uuid:1-5:7,uuid2:1-3``).

    With ``contiguous`` only the unbroken prefix from 1 counts, the safe reading of a replica
    whose multi-threaded applier may have gaps.
    """
    if not text or not text.strip():
        return Position(flavor="mysql")
    seqs: dict[str, int] = {}
    for part in text.replace("\n", "").split(","):
        uuid, *ranges = part.strip().split(":")
        if not _UUID.match(uuid) or not ranges:
            raise ValueError(f"not a MySQL GTID set member: {part.strip()[:60]!r}")
        best = 0
        for r in ranges:
            lo_s, _, hi_s = r.partition("-")
            if not lo_s.isdigit() or (hi_s and not hi_s.isdigit()):
                raise ValueError(f"not a MySQL GTID interval: {r[:40]!r}")
            lo, hi = int(lo_s), int(hi_s or lo_s)
            if contiguous:
                if lo > best + 1:
                    break
                best = max(best, hi)
            else:
                best = max(best, hi)
        seqs[uuid.lower()] = best
    return Position(seqs, {}, "mysql")
