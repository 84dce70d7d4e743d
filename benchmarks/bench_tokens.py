"""Tokens from clients: per-read latency with no token, a genuine token and a forged one.

The forged token is the issue-17 attack: a genuine token's GTID sequence number raised by 10^9,
checksum recomputed (no ``token_key``). Before, every read of such a session waited the full
``causal_timeout`` and ran on the primary; now the token is refused before anything waits. The
last row shows the one-wait rule: a genuine token both replicas lack (they are 30 s behind) costs
one ``causal_timeout`` per session, not one per read.

    python benchmarks/bench_tokens.py [--sessions 15] [--reads 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import rwsplit
from rwsplit.gtid import Position
from rwsplit.sandbox import Sandbox
from rwsplit.tokens import decode_token, encode_token


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "bench_token_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(sa.String(40))


def _session_reads(
    Session: sa.orm.sessionmaker[rwsplit.RoutingSession], token: str | None, reads: int
) -> tuple[float, int]:
    """Seconds per read of one session doing ``reads`` point reads, and how many ran on replicas."""
    started = time.perf_counter()
    on_replicas = 0
    with Session(after=token) as s:
        for i in range(reads):
            s.execute(sa.select(Note.body).where(Note.id == 1 + i % 5)).scalar()
            on_replicas += s.last_target != "primary"
    return (time.perf_counter() - started) / reads, on_replicas


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=15)
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    with Sandbox(replicas=2) as sb:
        setup = sa.create_engine(sb.primary_url)
        Base.metadata.create_all(setup)
        with setup.begin() as conn:
            conn.execute(sa.insert(Note), [{"id": i, "body": f"note {i}"} for i in range(1, 6)])
        setup.dispose()
        sb.wait_caught_up()
        engine = rwsplit.create_engine(sb.primary_url, replicas=sb.replica_urls, read_your_writes="causal")
        Session = rwsplit.sessionmaker(engine)
        try:
            with Session() as s:
                s.add(Note(id=100, body="write"))
                s.commit()
                genuine = s.consistency_token()
            sb.wait_caught_up()
            position = decode_token(genuine)
            forged = encode_token(
                Position({d: n + 10**9 for d, n in position.seqs.items()}, position.servers),
                engine.cluster_id,
            )
            rows = []
            for label, token in (("no token", None), ("genuine token", genuine)):
                runs = [_session_reads(Session, token, args.reads) for _ in range(args.sessions)]
                rows.append((label, statistics.median(r[0] for r in runs), sum(r[1] for r in runs)))
            refusals = []
            for _ in range(args.sessions):
                started = time.perf_counter()
                try:
                    Session(after=forged)
                except ValueError:
                    refusals.append(time.perf_counter() - started)
            for r in (1, 2):
                sb.delay_replica(r, 30)
            with Session() as s:
                s.add(Note(id=101, body="unreplicated"))
                s.commit()
                lacking = s.consistency_token()
            runs = [_session_reads(Session, lacking, args.reads) for _ in range(args.sessions)]
            rows.append(
                ("token replicas lack", statistics.median(r[0] for r in runs), sum(r[1] for r in runs))
            )
            for r in (1, 2):
                sb.delay_replica(r, 0)
            total = args.sessions * args.reads
            timeout_ms = engine.policy.causal_timeout * 1000
            print(
                f"{args.sessions} sessions × {args.reads} reads, causal mode, causal_timeout {timeout_ms:.0f} ms:"
            )
            for label, per_read, replicas in rows:
                print(
                    f"  {label:20s}: median {per_read * 1e3:7.3f} ms per read, {replicas}/{total} on replicas"
                )
            print(
                f"  forged (+10^9)      : refused {len(refusals)}/{args.sessions} times with ValueError, "
                f"median {statistics.median(refusals) * 1e3:.3f} ms to refuse, 0 reads run"
            )
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
