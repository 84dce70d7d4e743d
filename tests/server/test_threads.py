"""Many threads share one engine: every thread reads its own writes."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from helpers import PRIMARY, REPLICAS
from models import User
from sqlalchemy import func, select

import rwsplit


def test_many_threads_share_one_engine(make_engine) -> None:
    e = make_engine(pool_size=32, max_overflow=16)
    Session = rwsplit.sessionmaker(e)
    targets: list[str | None] = []
    lock = threading.Lock()

    def work(tid: int) -> int:
        seen: list[str | None] = []
        checks = 0
        for i in range(20):
            value = f"thread-{tid}-{i}-{uuid.uuid4().hex[:8]}"
            with Session() as s:
                user = User(name=value)
                s.add(user)
                s.commit()
                pk = user.id
                seen.append(s.last_target)
                got = s.execute(select(User.name).where(User.id == pk)).scalar_one_or_none()
                assert got == value, (tid, i, got, s.last_target)
                seen.append(s.last_target)
                checks += 1
            with Session() as s:
                s.execute(select(func.count()).select_from(User)).scalar_one()
                seen.append(s.last_target)
        with lock:
            targets.extend(seen)
        return checks

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(work, range(32)))
    assert results == [20] * 32
    assert PRIMARY in targets
    assert set(targets) & set(REPLICAS)
    assert set(targets) <= {PRIMARY, *REPLICAS}
