"""What the store knows about alerts sent: who got which story, and when.

The article an alert carried is its edition's one ``edition_article`` row; the
alert reached a subscriber when their delivery of that edition is ``sent``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from digest.store.models import Article, Delivery, DeliveryStatus, Edition, EditionArticle, EditionKind, Subscriber

D = Delivery.__table__  # type: ignore[attr-defined]
E = Edition.__table__  # type: ignore[attr-defined]
EA = EditionArticle.__table__  # type: ignore[attr-defined]
A = Article.__table__  # type: ignore[attr-defined]


def _sent_alerts(subscriber_ids: Collection[int]) -> Select[Any]:
    """(subscriber_id, article_id, sent_at, updated_at) of every alert sent to ``subscriber_ids``."""
    alert_ea = EA.alias("alert_ea")
    return (
        select(D.c.subscriber_id, alert_ea.c.article_id, D.c.sent_at, A.c.updated_at)
        .select_from(D)
        .join(E, and_(E.c.id == D.c.edition_id, E.c.kind == EditionKind.ALERT))
        .join(alert_ea, alert_ea.c.edition_id == E.c.id)
        .join(A, A.c.id == alert_ea.c.article_id)
        .where(D.c.subscriber_id.in_(list(subscriber_ids)), D.c.status == DeliveryStatus.SENT)
    )


def _changed(sent_at: datetime | None, updated_at: datetime | None) -> bool:
    return sent_at is not None and updated_at is not None and _utc(updated_at) > _utc(sent_at)


def alerted_stories(
    conn: Connection, edition_ids: Collection[int], subscriber_ids: Collection[int]
) -> dict[tuple[int, int], tuple[set[int], set[int]]]:
    """For each (digest edition, subscriber): the edition's articles the subscriber got as an alert.

    Split in two: ``(unchanged, updated)``, updated meaning the article changed after
    the alert was sent. One query for a whole claimed batch.
    """
    if not edition_ids or not subscriber_ids:
        return {}
    # Mostly no story of these editions went out as an alert: a look at a dozen
    # edition rows saves joining the batch's thousand subscribers with their deliveries.
    alert_ea, target_ea = EA.alias("alert_ea"), EA.alias("target_ea")
    shared = (
        select(alert_ea.c.article_id)
        .join(E, and_(E.c.id == alert_ea.c.edition_id, E.c.kind == EditionKind.ALERT))
        .join(target_ea, target_ea.c.article_id == alert_ea.c.article_id)
        .where(target_ea.c.edition_id.in_(list(edition_ids)))
        .limit(1)
    )
    if conn.execute(shared).first() is None:
        return {}
    sent = _sent_alerts(subscriber_ids).subquery()
    target = E.alias("target")
    stmt = (
        select(EA.c.edition_id, sent.c.subscriber_id, sent.c.article_id, sent.c.sent_at, sent.c.updated_at)
        .select_from(sent)
        .join(EA, and_(EA.c.article_id == sent.c.article_id, EA.c.edition_id.in_(list(edition_ids))))
        .join(target, and_(target.c.id == EA.c.edition_id, target.c.kind == EditionKind.DIGEST))
    )
    out: dict[tuple[int, int], tuple[set[int], set[int]]] = {}
    for edition_id, subscriber_id, article_id, sent_at, updated_at in conn.execute(stmt):
        unchanged, updated = out.setdefault((edition_id, subscriber_id), (set(), set()))
        (updated if _changed(sent_at, updated_at) else unchanged).add(article_id)
    return out


def alerted_among(conn: Connection, subscriber_id: int, article_ids: Collection[int]) -> tuple[set[int], set[int]]:
    """Of ``article_ids``, those the subscriber got as alerts: ``(unchanged, updated)`` (a preview's view)."""
    unchanged: set[int] = set()
    updated: set[int] = set()
    if article_ids:
        stmt = _sent_alerts([subscriber_id]).where(A.c.id.in_(list(article_ids)))
        for _, article_id, sent_at, updated_at in conn.execute(stmt):
            (updated if _changed(sent_at, updated_at) else unchanged).add(article_id)
    return unchanged, updated


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # SQLite returns naive UTC


def got_story(article_id: int) -> ColumnElement[bool]:
    """The condition on Subscriber rows: the article reached them already, in an alert or a
    digest sent (or about to be sent) to them."""
    other = aliased(EditionArticle)
    return exists().where(
        Delivery.subscriber_id == Subscriber.id,  # type: ignore[arg-type]
        Delivery.status.in_((DeliveryStatus.SENT, *DeliveryStatus.PENDING)),  # type: ignore[attr-defined]
        other.edition_id == Delivery.edition_id,  # type: ignore[arg-type]
        other.article_id == article_id,  # type: ignore[arg-type]
    )


def alerts_since(since: datetime) -> ColumnElement[int]:
    """The number of alerts sent to (or queued for) a subscriber since ``since``, as a column."""
    return (
        select(func.count())
        .select_from(D)
        .join(E, and_(E.c.id == D.c.edition_id, E.c.kind == EditionKind.ALERT))
        .where(
            D.c.subscriber_id == Subscriber.id,
            D.c.status.in_((DeliveryStatus.SENT, *DeliveryStatus.PENDING)),
            D.c.created_at >= since,
        )
        .scalar_subquery()
    )
