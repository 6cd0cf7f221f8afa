"""The subscriber lifecycle as library calls, on every backend, with a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digest.app import preferences as preferences_app
from digest.app import subscriptions as lifecycle
from digest.app.bounces import BounceResult, record_bounce
from digest.app.notices import Mailer
from digest.app.preferences import Preferences
from digest.app.subscriptions import Outcome, SubscribeForm
from digest.core.clock import FixedClock
from digest.core.errors import InputError, TokenError
from digest.core.settings import Settings
from digest.core.tokens import make_token
from digest.store.db import session_scope
from digest.store.models import Subscriber, SubscriberEvent, SubscriberEventKind, SubscriberStatus
from digest.store.subscribers import add_subscriber, find_subscriber, remove_subscriber
from digest.transport.sink import SmtpSink
from digest.web.server import smtp_transport_factory
from tests.conftest import NOW
from tests.web.conftest import SECRET_KEY
from tests.web.helpers import link_in, parsed


@pytest.fixture
def mailer(web_settings: Settings) -> Mailer:
    return Mailer(web_settings, smtp_transport_factory(web_settings))


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def sub_of(engine: Engine, address: str) -> Subscriber:
    with session_scope(engine) as s:
        sub = find_subscriber(s, address)
        assert sub is not None
        return sub


def kinds(engine: Engine, sub_id: int) -> list[str]:
    with session_scope(engine) as s:
        return [e.kind for e in lifecycle.events(s, sub_id)]


def request(
    engine: Engine, settings: Settings, clock: FixedClock, mailer: Mailer, address: str, **kw: object
) -> Outcome:
    return lifecycle.request_subscription(engine, settings, clock, SubscribeForm(email=address, **kw), mailer)  # type: ignore[arg-type]


# ---------------------------------------------------------------- subscribe and confirm


def test_request_creates_a_pending_subscriber_and_mails_a_confirmation_link(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    outcome = request(
        engine,
        web_settings,
        clock,
        mailer,
        "Ana@Example.org",
        name="Ana",
        topics=("science", "Nope"),
        timezone="Europe/Berlin",
    )

    assert outcome == Outcome.CONFIRMATION_SENT
    sub = sub_of(engine, "ana@example.org")
    assert (sub.status, sub.name, sub.topics, sub.timezone) == ("pending", "Ana", ["Science"], "Europe/Berlin")
    [received] = sink.messages
    msg = parsed(received.data)
    assert received.rcpt_tos == ["Ana@example.org"]
    assert msg["Subject"] == "Confirm your subscription to The Briefing"
    assert "/confirm/" in link_in(received.data, "confirm")
    assert kinds(engine, sub.id) == [SubscriberEventKind.SUBSCRIBE_REQUEST, SubscriberEventKind.CONFIRM_SENT]  # type: ignore[arg-type]


def test_confirmation_email_has_html_and_text_parts_and_list_headers(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org", name="Ana")

    msg = parsed(sink.messages[0].data)
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Yes, subscribe me" in html and "Hi Ana," in html and 'style="' in html
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in msg["List-Unsubscribe"]


def test_confirming_activates_and_is_idempotent(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org")
    token = token_of(link_in(sink.messages[0].data, "confirm"))

    first = lifecycle.confirm_subscription(engine, web_settings, clock, token)
    again = lifecycle.confirm_subscription(engine, web_settings, clock, token)

    assert first.status == again.status == SubscriberStatus.ACTIVE
    assert kinds(engine, first.id).count(SubscriberEventKind.CONFIRMED) == 1  # type: ignore[arg-type]


def test_confirmation_link_expires(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org")
    token = token_of(link_in(sink.messages[0].data, "confirm"))
    clock.advance(web_settings.web.confirm_max_age + timedelta(seconds=1))

    with pytest.raises(TokenError):
        lifecycle.confirm_subscription(engine, web_settings, clock, token)
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.PENDING


def test_request_for_an_active_subscriber_changes_nothing_and_mails_a_notice(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    with session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW, name="Ana", topics="World", timezone="Asia/Tokyo")

    outcome = request(engine, web_settings, clock, mailer, "ana@example.org", name="Mallory", topics=("Science",))

    assert outcome == Outcome.NOTICE_SENT
    sub = sub_of(engine, "ana@example.org")
    assert (sub.status, sub.name, sub.topics, sub.timezone) == ("active", "Ana", ["World"], "Asia/Tokyo")
    msg = parsed(sink.messages[0].data)
    assert msg["Subject"] == "You're already subscribed to The Briefing"
    assert "/confirm/" not in msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "/preferences/" in link_in(sink.messages[0].data, "preferences")


def test_repeated_requests_send_one_email_per_resend_interval(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    outcomes = [request(engine, web_settings, clock, mailer, "ana@example.org") for _ in range(3)]
    clock.advance(web_settings.web.resend_interval)
    outcomes.append(request(engine, web_settings, clock, mailer, "ana@example.org"))

    assert outcomes == [Outcome.CONFIRMATION_SENT, Outcome.THROTTLED, Outcome.THROTTLED, Outcome.CONFIRMATION_SENT]
    assert len(sink.messages) == 2


def test_unsubscribed_address_can_subscribe_again_through_confirmation(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    with session_scope(engine) as s:
        add_subscriber(s, "ana@example.org", NOW, status="unsubscribed")

    assert request(engine, web_settings, clock, mailer, "ana@example.org") == Outcome.CONFIRMATION_SENT
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.UNSUBSCRIBED
    lifecycle.confirm_subscription(engine, web_settings, clock, token_of(link_in(sink.messages[0].data, "confirm")))
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.ACTIVE


def test_suppressed_deleted_address_stays_suppressed_until_its_owner_confirms(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    from digest.store.suppressions import suppression_of

    with session_scope(engine) as s:
        sub, _ = add_subscriber(s, "ana@example.org", NOW)
        lifecycle.unsubscribe(s, sub, NOW, source="web")
    with session_scope(engine) as s:
        remove_subscriber(s, "ana@example.org")

    request(engine, web_settings, clock, mailer, "ana@example.org")
    with engine.connect() as conn:
        pending = suppression_of(conn, "ana@example.org")
    lifecycle.confirm_subscription(engine, web_settings, clock, token_of(link_in(sink.messages[0].data, "confirm")))
    with engine.connect() as conn:
        after = suppression_of(conn, "ana@example.org")
    assert pending is not None and pending.reason == "unsubscribed"
    assert after is None


def test_confirmation_link_does_not_bring_back_someone_who_unsubscribed(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org")
    token = token_of(link_in(sink.messages[0].data, "confirm"))
    sub = lifecycle.confirm_subscription(engine, web_settings, clock, token)
    clock.advance(timedelta(hours=1))
    with session_scope(engine) as s:
        lifecycle.unsubscribe(s, s.get(Subscriber, sub.id), clock.now(), source="web")  # type: ignore[arg-type]

    with pytest.raises(TokenError):  # still within confirm_max_age
        lifecycle.confirm_subscription(engine, web_settings, clock, token)
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.UNSUBSCRIBED


def test_confirmation_link_does_not_bring_back_a_bounced_subscriber(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org")
    token = token_of(link_in(sink.messages[0].data, "confirm"))
    lifecycle.confirm_subscription(engine, web_settings, clock, token)
    for i in range(web_settings.bounce_limit):
        record_bounce(engine, web_settings, clock, "ana@example.org", permanent=True, ref=f"<b{i}@mx>")

    with pytest.raises(TokenError):
        lifecycle.confirm_subscription(engine, web_settings, clock, token)
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.BOUNCED


def test_an_older_unused_confirmation_link_is_void_once_the_subscriber_left(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org")
    clock.advance(web_settings.web.resend_interval)
    request(engine, web_settings, clock, mailer, "ana@example.org")
    older, newer = (token_of(link_in(m.data, "confirm")) for m in sink.messages)
    sub = lifecycle.confirm_subscription(engine, web_settings, clock, newer)
    lifecycle.unsubscribe_by_token(
        engine,
        web_settings,
        clock,
        make_token(SECRET_KEY, "unsubscribe", sub.id, sub.email_key),
        source="web",  # type: ignore[arg-type]
    )

    with pytest.raises(TokenError):
        lifecycle.confirm_subscription(engine, web_settings, clock, older)
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.UNSUBSCRIBED


def test_form_does_not_change_a_known_persons_details_before_they_confirm(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    with session_scope(engine) as s:
        add_subscriber(
            s, "ana@example.org", NOW, name="Ana", topics="World", timezone="Asia/Tokyo", status="unsubscribed"
        )

    request(
        engine, web_settings, clock, mailer, "ana@example.org", name="Mallory", topics=("Business",), timezone="UTC"
    )

    sub = sub_of(engine, "ana@example.org")
    assert (sub.status, sub.name, sub.topics, sub.timezone) == ("unsubscribed", "Ana", ["World"], "Asia/Tokyo")


def test_what_the_form_asked_for_applies_when_the_mailbox_owner_confirms(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    with session_scope(engine) as s:
        add_subscriber(
            s, "ana@example.org", NOW, name="Ana", topics="World", timezone="Asia/Tokyo", status="unsubscribed"
        )
    request(
        engine, web_settings, clock, mailer, "ana@example.org", name="Ana Lima", topics=("Science",), timezone="UTC"
    )

    lifecycle.confirm_subscription(engine, web_settings, clock, token_of(link_in(sink.messages[0].data, "confirm")))

    sub = sub_of(engine, "ana@example.org")
    assert (sub.status, sub.name, sub.topics, sub.timezone) == ("active", "Ana Lima", ["Science"], "UTC")


@pytest.mark.parametrize(
    ("field", "kw"), [("email", {"email": "not-an-address"}), ("timezone", {"timezone": "Mars/Base"})]
)
def test_invalid_request_is_an_input_error_naming_the_field(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink, field: str, kw: dict
) -> None:
    form = {"email": "ana@example.org", **kw}
    with pytest.raises(InputError) as info:
        lifecycle.request_subscription(engine, web_settings, clock, SubscribeForm(**form), mailer)
    assert info.value.where == field
    assert sink.messages == []


# ---------------------------------------------------------------- tokens


@pytest.fixture
def ana_and_ben(engine: Engine) -> tuple[Subscriber, Subscriber]:
    with session_scope(engine) as s:
        ana, _ = add_subscriber(s, "ana@example.org", NOW)
        ben, _ = add_subscriber(s, "ben@example.org", NOW)
        return ana, ben


def test_token_for_one_purpose_does_not_work_for_another(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    ana, _ = ana_and_ben
    unsub = make_token(SECRET_KEY, "unsubscribe", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]

    with pytest.raises(TokenError):
        preferences_app.update_preferences(engine, web_settings, clock, unsub, Preferences())
    with pytest.raises(TokenError):
        lifecycle.confirm_subscription(engine, web_settings, clock, unsub)


def test_token_signed_with_another_key_is_refused(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    ana, _ = ana_and_ben
    forged = make_token("guessed-key", "unsubscribe", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]

    with pytest.raises(TokenError):
        lifecycle.unsubscribe_by_token(engine, web_settings, clock, forged, source="test")
    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.ACTIVE


def test_token_cannot_be_replayed_for_another_subscriber(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    ana, ben = ana_and_ben
    # A token claiming Ben's id but bound to Ana's address (what an attacker could
    # assemble from two real tokens) does not verify: the payload is signed as a whole.
    anas = make_token(SECRET_KEY, "unsubscribe", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]
    bens = make_token(SECRET_KEY, "unsubscribe", ben.id, ben.email_key, now=NOW)  # type: ignore[arg-type]
    spliced = bens.split(".")[0] + "." + anas.split(".", 1)[1]

    with pytest.raises(TokenError):
        lifecycle.unsubscribe_by_token(engine, web_settings, clock, spliced, source="test")
    assert {sub_of(engine, a).status for a in ("ana@example.org", "ben@example.org")} == {"active"}


def test_token_of_a_deleted_subscriber_does_not_work_for_whoever_gets_the_id(
    engine: Engine, web_settings: Settings, clock: FixedClock
) -> None:
    with session_scope(engine) as s:
        old, _ = add_subscriber(s, "old@example.org", NOW)
    token = make_token(SECRET_KEY, "unsubscribe", old.id, old.email_key, now=NOW)  # type: ignore[arg-type]
    with session_scope(engine) as s:
        remove_subscriber(s, "old@example.org")
        s.add(
            Subscriber(id=old.id, email="new@example.org", email_key="new@example.org", created_at=NOW, updated_at=NOW)
        )

    with pytest.raises(TokenError):
        lifecycle.unsubscribe_by_token(engine, web_settings, clock, token, source="test")
    assert sub_of(engine, "new@example.org").status == SubscriberStatus.ACTIVE


# ---------------------------------------------------------------- preferences and unsubscribe


def test_preferences_are_validated_and_stored(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    ana, _ = ana_and_ben
    token = make_token(SECRET_KEY, "preferences", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]
    prefs = preferences_app.parse_preferences(
        web_settings,
        topics=["business", "Cooking"],
        timezone="America/Chicago",
        send_time="6:30",
        frequency="weekly",
        weekday="4",
    )

    preferences_app.update_preferences(engine, web_settings, clock, token, prefs)

    sub = sub_of(engine, "ana@example.org")
    assert (sub.topics, sub.timezone, sub.send_time, sub.frequency, sub.weekday) == (
        ["Business"],
        "America/Chicago",
        "06:30",
        "weekly",
        4,
    )


def test_preferences_without_the_breaking_choice_keep_the_stored_one(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    ana, _ = ana_and_ben
    token = make_token(SECRET_KEY, "preferences", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]
    no = preferences_app.parse_preferences(
        web_settings, topics=["Science"], timezone=None, send_time=None, frequency=None, weekday=None, breaking=False
    )
    preferences_app.update_preferences(engine, web_settings, clock, token, no)
    unsaid = preferences_app.parse_preferences(
        web_settings, topics=["Science"], timezone=None, send_time=None, frequency=None, weekday=None
    )

    preferences_app.update_preferences(engine, web_settings, clock, token, unsaid)

    assert sub_of(engine, "ana@example.org").breaking is False


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"send_time": "25:00"}, "send_time"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"frequency": "hourly"}, "frequency"),
        ({"frequency": "weekly"}, "weekday"),
        ({"frequency": "weekly", "weekday": "9"}, "weekday"),
    ],
)
def test_bad_preferences_name_the_field(web_settings: Settings, raw: dict, field: str) -> None:
    values = {"topics": [], "timezone": None, "send_time": None, "frequency": "daily", "weekday": None, **raw}
    with pytest.raises(InputError) as info:
        preferences_app.parse_preferences(web_settings, **values)
    assert info.value.where == field


def test_unsubscribe_by_token_is_idempotent_and_recorded_once(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    ana, _ = ana_and_ben
    token = make_token(SECRET_KEY, "unsubscribe", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]

    for _ in range(2):
        lifecycle.unsubscribe_by_token(engine, web_settings, clock, token, source="one-click")

    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.UNSUBSCRIBED
    assert sub_of(engine, "ben@example.org").status == SubscriberStatus.ACTIVE
    assert kinds(engine, ana.id) == [SubscriberEventKind.UNSUBSCRIBED]  # type: ignore[arg-type]


def test_preferences_token_resubscribes(engine: Engine, web_settings: Settings, clock: FixedClock) -> None:
    with session_scope(engine) as s:
        ana, _ = add_subscriber(s, "ana@example.org", NOW, status="unsubscribed")
    token = make_token(SECRET_KEY, "preferences", ana.id, ana.email_key, now=NOW)  # type: ignore[arg-type]

    preferences_app.resubscribe_by_token(engine, web_settings, clock, token)

    assert sub_of(engine, "ana@example.org").status == SubscriberStatus.ACTIVE


# ---------------------------------------------------------------- bounces and erasure


def test_permanent_bounces_mark_bounced_at_the_limit_and_count_each_report_once(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    def bounce(ref: str) -> BounceResult:
        return record_bounce(engine, web_settings, clock, "ANA@example.org", permanent=True, ref=ref)

    results = [bounce("<r1@mx>"), bounce("<r1@mx>"), bounce("<r2@mx>"), bounce("<r3@mx>")]

    assert results == [BounceResult.COUNTED, BounceResult.DUPLICATE, BounceResult.COUNTED, BounceResult.BOUNCED]
    sub = sub_of(engine, "ana@example.org")
    assert (sub.bounce_count, sub.status) == (3, SubscriberStatus.BOUNCED)


def test_temporary_bounce_is_recorded_only(
    engine: Engine, web_settings: Settings, clock: FixedClock, ana_and_ben: tuple[Subscriber, Subscriber]
) -> None:
    result = record_bounce(engine, web_settings, clock, "ana@example.org", permanent=False, ref="<t@mx>")

    assert result == BounceResult.RECORDED
    sub = sub_of(engine, "ana@example.org")
    assert (sub.bounce_count, sub.status) == (0, SubscriberStatus.ACTIVE)
    assert kinds(engine, sub.id) == [SubscriberEventKind.BOUNCE_TEMPORARY]  # type: ignore[arg-type]


def test_removing_a_subscriber_erases_their_events(
    engine: Engine, web_settings: Settings, clock: FixedClock, mailer: Mailer, sink: SmtpSink
) -> None:
    request(engine, web_settings, clock, mailer, "ana@example.org")

    with session_scope(engine) as s:
        remove_subscriber(s, "ana@example.org")

    with session_scope(engine) as s:
        assert s.exec(select(SubscriberEvent)).all() == []
