"""The webhook queue: events written in the transaction of their change, claimed once, pushed back on failure."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.app.subscriptions import unsubscribe
from digest.core.settings import Settings
from digest.outbox.ledger import Bounce, finish_edition, record
from digest.store.db import session_scope
from digest.store.models import DeliveryStatus, Subscriber, WebhookEvent
from digest.store.webhooks import add_webhook, claim_due, expand, failed, health, remove_webhook
from tests.conftest import NOW, STANDARD_DRAFTS, seed
from tests.outbox.support import D, readers
from tests.outbox.test_ledger import edition_of

WE = WebhookEvent.__table__  # type: ignore[attr-defined]


def hook(engine: Engine, *events: str, url: str = "http://127.0.0.1:9/hooks") -> int:
    with engine.begin() as conn:
        return add_webhook(conn, url, events, "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=", NOW)


def queued(engine: Engine) -> list[tuple[int, str, dict]]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        rows = conn.execute(select(WE.c.webhook_id, WE.c.event_type, WE.c.payload).order_by(WE.c.id)).all()
    return [(r.webhook_id, r.event_type, json.loads(r.payload)) for r in rows]


def test_a_recorded_batch_of_250_sent_deliveries_queues_three_events(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(250))
    edition_id = edition_of(engine, settings)
    listening = hook(engine, "delivery.sent")
    hook(engine, "delivery.failed")  # asked for other events: gets none of these
    with engine.connect() as conn:
        delivery_ids = [r.id for r in conn.execute(select(D.c.id).where(D.c.edition_id == edition_id))]
    results = [{"id": i, "status": DeliveryStatus.SENT, "sent_at": NOW, "message_id": f"<{i}@x>"} for i in delivery_ids]

    record(engine, settings, results, [], NOW)

    events = queued(engine)
    assert [(w, t) for w, t, _ in events] == [(listening, "delivery.sent")] * 3
    assert [len(p["data"]["delivery_ids"]) for _, _, p in events] == [100, 100, 50]
    with engine.connect() as conn:
        body = json.loads(expand(conn, json.dumps(events[2][2])))
    [first, *_] = body["data"]["deliveries"]
    assert len(body["data"]["deliveries"]) == 50
    assert first["email"].endswith("@example.org") and first["edition_id"] == edition_id
    assert (first["status"], first["message_id"]) == ("sent", f"<{first['id']}@x>")


def test_unsubscribe_rolled_back_leaves_no_event(engine: Engine) -> None:
    seed(engine, [], [("ana@example.org", "Ana", None)])
    hook(engine, "subscriber.unsubscribed")

    with pytest.raises(RuntimeError), session_scope(engine) as session:
        sub = session.exec(select(Subscriber)).scalars().one()  # type: ignore[call-overload]
        unsubscribe(session, sub, NOW, source="web")
        raise RuntimeError("the request failed after the change")

    assert queued(engine) == []


def test_unsubscribe_queues_its_event_with_the_change(engine: Engine) -> None:
    seed(engine, [], [("ana@example.org", "Ana", None)])
    hook_id = hook(engine, "subscriber.unsubscribed")

    with session_scope(engine) as session:
        sub = session.exec(select(Subscriber)).scalars().one()  # type: ignore[call-overload]
        unsubscribe(session, sub, NOW, source="web")

    [(to, event_type, payload)] = queued(engine)
    assert (to, event_type) == (hook_id, "subscriber.unsubscribed")
    assert payload["data"]["subscriber"]["email"] == "ana@example.org"
    assert payload["data"]["source"] == "web"


def test_a_permanent_bounce_queues_subscriber_bounced(engine: Engine, settings: Settings) -> None:
    seed(engine, [], [("ana@example.org", "Ana", None)])
    hook(engine, "subscriber.bounced")
    with engine.connect() as conn:
        sub_id = conn.execute(select(Subscriber.__table__.c.id)).scalar_one()  # type: ignore[attr-defined]

    record(engine, settings, [], [Bounce(sub_id, "<m1@x>", "550 no such user")], NOW)

    [(_, event_type, payload)] = queued(engine)
    assert event_type == "subscriber.bounced"
    assert payload["data"]["kind"] == "bounce_permanent"
    assert payload["data"]["detail"] == "550 no such user"
    assert payload["data"]["stopped"] is False  # bounce_limit is 3


def test_finishing_an_edition_queues_edition_sent_once(engine: Engine, settings: Settings) -> None:
    seed(engine, STANDARD_DRAFTS, readers(2))
    edition_id = edition_of(engine, settings)
    hook(engine, "edition.sent")
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(select(D.c.id))]
    record(engine, settings, [{"id": i, "status": DeliveryStatus.SENT, "sent_at": NOW} for i in ids], [], NOW)

    finish_edition(engine, edition_id, NOW)
    finish_edition(engine, edition_id, NOW)

    [(_, event_type, payload)] = queued(engine)
    assert event_type == "edition.sent"
    assert payload["data"]["edition"]["deliveries"] == {"sent": 2}


def test_concurrent_claims_never_overlap(engine: Engine, settings: Settings) -> None:
    seed(engine, [], readers(60))
    hook(engine, "subscriber.unsubscribed")
    with session_scope(engine) as session:
        for sub in session.exec(select(Subscriber)).scalars():  # type: ignore[call-overload]
            unsubscribe(session, sub, NOW, source="web")
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def claim(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while batch := claim_due(engine, name, NOW, timedelta(minutes=2), 7):
            mine += [c.id for c in batch]
        got[name] = mine

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == len(set(claimed)) == 60


def test_a_failure_pushes_back_the_endpoints_queue_and_disables_it_at_the_limit(engine: Engine) -> None:
    seed(engine, [], readers(3))
    hook_id = hook(engine, "subscriber.unsubscribed")
    with session_scope(engine) as session:
        for sub in session.exec(select(Subscriber)).scalars():  # type: ignore[call-overload]
            unsubscribe(session, sub, NOW, source="web")
    first = claim_due(engine, "w", NOW, timedelta(minutes=2), 1)[0]
    later = NOW + timedelta(minutes=1)

    disabled, dropped = failed(engine, first, "HTTP 500", NOW, later, disable_after=1, max_attempts=5)

    assert (disabled, dropped) == (True, False)
    with engine.connect() as conn:
        assert {r.next_attempt_at for r in conn.execute(select(WE.c.next_attempt_at))} == {later}
        [h] = health(conn)
    assert (h.id, h.pending, h.consecutive_failures, h.last_error) == (hook_id, 3, 1, "HTTP 500")
    assert h.disabled_at == NOW
    assert claim_due(engine, "w", later, timedelta(minutes=2), 10) == []  # disabled: nothing to claim


def test_removing_a_webhook_drops_its_queue(engine: Engine) -> None:
    seed(engine, [], readers(1))
    hook_id = hook(engine, "subscriber.unsubscribed")
    with session_scope(engine) as session:
        unsubscribe(session, session.exec(select(Subscriber)).scalars().one(), NOW, source="web")  # type: ignore[call-overload]

    with engine.begin() as conn:
        assert remove_webhook(conn, hook_id)

    assert queued(engine) == []
