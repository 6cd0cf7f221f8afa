"""What the webhook outbox costs the ledger: ``python -m bench.webhooks [--deliveries N] [--database-url URL]``.

The ledger's ``record()`` writes a batch of results in one transaction; with an
endpoint listening to ``delivery.sent`` it also reads the batch's subscribers and
queues one event per 100 deliveries in that transaction. In the same run, on the
same rows, in interleaved rounds (a burst of load from elsewhere hits both alike):

- ``plain``: no webhook at all (one small SELECT on the empty ``webhook`` table);
- ``hooked``: one endpoint listening to ``delivery.sent``.

Prints the median time per batch of each and their ratio (the median of per-round
ratios).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, insert, select

from digest.core.settings import Settings
from digest.outbox.ledger import record
from digest.store.db import make_engine, session_scope, upgrade
from digest.store.models import Delivery, DeliveryStatus, Edition, Subscriber, Webhook, WebhookEvent

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
W = Webhook.__table__  # type: ignore[attr-defined]
WE = WebhookEvent.__table__  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(S),
                [
                    {"email": f"r{i}@example.org", "email_key": f"r{i}@example.org", "name": "", "status": "active",
                     "topics": [], "frequency": "daily", "created_at": NOW, "updated_at": NOW}
                    for i in range(args.deliveries)
                ],
            )  # fmt: skip
        with session_scope(engine) as s:
            edition = Edition(digest="daily", slot="2026-11-25", built_at=NOW)
            s.add(edition)
            s.flush()
            edition_id = edition.id
        with engine.begin() as conn:
            sub_ids = [r.id for r in conn.execute(select(S.c.id).order_by(S.c.id))]
            conn.execute(
                insert(D),
                [{"edition_id": edition_id, "subscriber_id": i, "status": "claimed", "attempts": 0, "created_at": NOW}
                 for i in sub_ids],
            )  # fmt: skip
            ids = [r.id for r in conn.execute(select(D.c.id).order_by(D.c.id))]
        settings = Settings(database_url=str(engine.url))
        batches = [
            [
                {"id": i, "status": DeliveryStatus.SENT, "attempts": 1, "message_id": f"<{i}@x>",
                 "last_response": "250 ok", "sent_at": NOW}
                for i in ids[n : n + args.batch]
            ]
            for n in range(0, len(ids), args.batch)
        ]  # fmt: skip

        def run(hooked: bool) -> float:
            with engine.begin() as conn:
                conn.execute(delete(WE))
                conn.execute(delete(W))
                if hooked:
                    hook = {"url": "http://127.0.0.1:9/", "events": ["delivery.sent"], "secret": "x", "created_at": NOW}
                    conn.execute(insert(W).values(hook))
            started = time.perf_counter()
            for batch in batches:
                record(engine, settings, batch, [], NOW)
            return (time.perf_counter() - started) / len(batches)

        times: dict[str, list[float]] = {"plain": [], "hooked": []}
        ratios = []
        for r in range(args.rounds):
            order = ["plain", "hooked"] if r % 2 == 0 else ["hooked", "plain"]
            got = {name: run(name == "hooked") for name in order}
            for name, t in got.items():
                times[name].append(t)
            ratios.append(got["hooked"] / got["plain"])
        engine.dispose()
    backend = (args.database_url or "sqlite").split(":")[0]
    print(f"record() of {args.batch}-delivery batches, {args.deliveries} deliveries, {backend}, {args.rounds} rounds")
    for name, ts in times.items():
        print(f"  {name:7s} {statistics.median(ts) * 1000:8.1f} ms per batch")
    print(f"  hooked/plain ratio (median of rounds): {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
