"""Mailbox providers: the domain table, the MX rollup (against a DNS server on loopback), reply verdicts, limits."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from digest.core.dns import make_resolver
from digest.core.settings import ProviderLimits, Settings
from digest.transport.providers import ProviderMap, ProviderShaper, known_provider
from digest.transport.replies import Verdict, classify_reply
from tests.dnsserver import Zone, dns_server


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def mx_port() -> Iterator[int]:
    zone = Zone()
    zone.mx("workspace-shop.org", "aspmx.l.google.com", 1).mx("workspace-shop.org", "alt1.aspmx.l.google.com", 5)
    zone.mx("aol-family.net", "mx-aol.mail.gm0.yahoodns.net")
    zone.mx("contoso-mail.org", "contoso-mail-org.mail.protection.outlook.com")
    zone.mx("custom-icloud.org", "mx01.mail.icloud.com")
    zone.mx("own-server.org", "mail.own-server.org")
    zone.txt("no-mx.org", "v=spf1 -all")
    with dns_server(zone) as port:
        yield port


@pytest.mark.parametrize(
    ("domain", "provider"),
    [
        ("gmail.com", "google"),
        ("GoogleMail.com", "google"),
        ("yahoo.co.uk", "yahoo"),
        ("aol.com", "yahoo"),
        ("ymail.com", "yahoo"),
        ("hotmail.fr", "microsoft"),
        ("live.com.au", "microsoft"),
        ("outlook.com", "microsoft"),
        ("msn.com", "microsoft"),
        ("icloud.com", "apple"),
        ("me.com", "apple"),
        ("yahoo.co.jp", None),  # another company's mail
        ("live.example-news.com", None),
    ],
)
def test_well_known_domains_need_no_dns(domain: str, provider: str | None) -> None:
    assert known_provider(domain) == provider


@pytest.mark.parametrize(
    ("address", "provider"),
    [
        ("a@workspace-shop.org", "google"),
        ("a@aol-family.net", "yahoo"),
        ("a@contoso-mail.org", "microsoft"),
        ("a@custom-icloud.org", "apple"),
        ("a@own-server.org", "other"),
        ("a@no-mx.org", "other"),
        ("a@nowhere-at-all.org", "other"),
    ],
)
def test_other_domains_roll_up_by_their_mx_hosts(mx_port: int, address: str, provider: str) -> None:
    providers = ProviderMap(make_resolver("127.0.0.1", mx_port, timeout=2.0))

    assert providers.provider(address) == provider


def test_an_answer_is_cached_until_its_ttl_runs_out(mx_port: int) -> None:
    clock = FakeTime()
    providers = ProviderMap(make_resolver("127.0.0.1", mx_port, timeout=2.0), min_ttl=60, now=clock)

    found = [providers.provider("a@workspace-shop.org"), providers.provider("b@Workspace-Shop.org")]
    clock.t += 61
    found.append(providers.provider("c@workspace-shop.org"))

    assert found == ["google"] * 3
    assert providers.lookups == 2


def test_a_batch_looks_each_domain_up_once(mx_port: int) -> None:
    providers = ProviderMap(make_resolver("127.0.0.1", mx_port, timeout=2.0))

    found = providers.providers(["a@contoso-mail.org", "b@contoso-mail.org", "c@gmail.com", "d@own-server.org"])

    assert found == {
        "a@contoso-mail.org": "microsoft",
        "b@contoso-mail.org": "microsoft",
        "c@gmail.com": "google",
        "d@own-server.org": "other",
    }
    assert providers.lookups == 2


def test_reserved_names_are_never_looked_up(mx_port: int) -> None:
    providers = ProviderMap(make_resolver("127.0.0.1", mx_port, timeout=2.0))

    found = {providers.provider(a) for a in ("a@example.org", "b@news.example.com", "c@shop.test", "d@[192.0.2.1]")}

    assert (found, providers.lookups) == ({"other"}, 0)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port on loopback that takes queries and never answers: every lookup times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_dead_resolver_costs_three_timeouts_then_nothing(silent_port: int) -> None:
    providers = ProviderMap(make_resolver("127.0.0.1", silent_port, timeout=0.2), failures=3, cooldown=60)

    started = time.monotonic()
    found = {providers.provider(f"a@domain{i}.org") for i in range(20)}

    assert found == {"other"}
    assert providers.lookups == 3
    assert time.monotonic() - started < 3 * 0.2 + 1.0


def test_a_batch_waits_for_dns_no_longer_than_its_budget(silent_port: int) -> None:
    providers = ProviderMap(make_resolver("127.0.0.1", silent_port, timeout=2.0))

    started = time.monotonic()
    found = providers.providers(["a@slow-one.org", "b@slow-two.org", "c@gmail.com"], budget=0.2)
    waited = time.monotonic() - started
    # The two lookups left behind time out 2 s later: here, not logging into the next test's output.
    providers.close()

    assert found == {"a@slow-one.org": "other", "b@slow-two.org": "other", "c@gmail.com": "google"}
    assert waited < 1.0


# ---------------------------------------------------------------- replies


@pytest.mark.parametrize(
    ("provider", "code", "text", "action"),
    [
        ("google", 421, "4.7.28 Our system has detected an unusual rate of unsolicited mail", "throttle"),
        ("yahoo", 421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints", "throttle"),
        (
            "microsoft",
            451,
            "4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. (S775)",
            "throttle",
        ),
        ("apple", 421, "[HCM1] Your mail from 192.0.2.1 was deferred", "throttle"),
        (
            "microsoft",
            550,
            "5.7.515 Access denied, sending domain example.com does not meet the required authentication level.",
            "policy",
        ),
        ("google", 550, "5.7.26 Unauthenticated email from example.com is not accepted due to DMARC policy", "policy"),
        ("yahoo", 553, "5.7.1 [BL21] Connections not accepted from 192.0.2.1, the IP is in Spamhaus's list", "policy"),
        ("other", 550, "5.7.515 Access denied, sending domain does not meet the authentication level", "policy"),
        ("other", 421, "4.7.28 unusual rate", "normal"),  # not a provider's: the server-level throttle applies
        ("google", 550, "5.1.1 The email account that you tried to reach does not exist", "normal"),
        ("google", 452, "4.2.2 The email account that you tried to reach is over quota", "normal"),
        ("microsoft", 550, "5.5.0 Requested action not taken: mailbox unavailable", "normal"),
    ],
)
def test_replies_are_classified_per_provider(provider: str, code: int, text: str, action: str) -> None:
    assert classify_reply(provider, code, text).action == action


# ---------------------------------------------------------------- limits and pauses


def shaper(clock: FakeTime, **limits: ProviderLimits) -> ProviderShaper:
    return ProviderShaper({**Settings().delivery.providers, **limits}, now=clock)


def test_a_provider_at_its_cap_waits_until_a_message_finishes() -> None:
    clock = FakeTime()
    s = shaper(clock, yahoo=ProviderLimits(connections=2))

    kinds = [s.admit("yahoo").kind for _ in range(3)]
    s.finished("yahoo")

    assert kinds == ["go", "go", "full"]
    assert s.admit("yahoo").kind == "go"


def test_per_minute_spaces_messages_evenly() -> None:
    clock = FakeTime()
    s = shaper(clock, apple=ProviderLimits(per_minute=60))

    first, second = s.admit("apple"), s.admit("apple")
    clock.t += 1.0

    assert (first.kind, second.kind, second.seconds) == ("go", "wait", 1.0)
    assert s.admit("apple").kind == "go"


def test_a_deferral_pauses_that_provider_only() -> None:
    clock = FakeTime()
    s = shaper(clock)

    paused = s.react("google", classify_reply("google", 421, "4.7.28 unusual rate"), "421 4.7.28 unusual rate")

    assert paused == 600
    assert (s.admit("google").kind, s.admit("google").seconds) == ("defer", 600)
    assert s.admit("yahoo").kind == "go" and s.admit("other").kind == "go"
    clock.t += 597  # the last seconds of a pause are waited out in memory
    assert s.admit("google").kind == "wait"
    clock.t += 3
    assert s.admit("google").kind == "go"


def test_other_is_never_paused() -> None:
    s = shaper(FakeTime())

    assert s.react("other", Verdict("policy", "sender authentication"), "550 5.7.26") == 0
    assert s.admit("other").kind == "go"


def test_a_policy_rejection_is_logged_as_an_error_once_per_pause(caplog: pytest.LogCaptureFixture) -> None:
    s = shaper(FakeTime(), microsoft=ProviderLimits(policy_pause=timedelta(minutes=30)))
    verdict = classify_reply("microsoft", 550, "5.7.515 Access denied")

    with caplog.at_level(logging.WARNING, logger="digest.transport.providers"):
        first = s.react("microsoft", verdict, "550 5.7.515 Access denied")
        s.react("microsoft", verdict, "550 5.7.515 Access denied")

    assert first == 1800
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "digest doctor" in caplog.records[0].getMessage()


def test_a_pause_a_reply_caused_is_taken_once_for_sharing() -> None:
    clock = FakeTime()
    s = shaper(clock)
    s.react("google", classify_reply("google", 421, "4.7.28 unusual rate"), "421 4.7.28 unusual rate")
    clock.t += 100

    assert s.take_pauses() == [("google", 500, "google gmail rate limit: 421 4.7.28 unusual rate")]
    assert s.take_pauses() == []


def test_a_pause_learnt_from_elsewhere_holds_back_only_that_provider_and_is_not_shared_again() -> None:
    clock = FakeTime()
    s = shaper(clock)

    assert s.pause("google", 300, "google gmail rate limit: 421 4.7.28")

    assert (s.admit("google").kind, s.admit("google").seconds) == ("defer", 300)
    assert s.admit("google").reason == "google gmail rate limit: 421 4.7.28"
    assert s.admit("yahoo").kind == "go"
    assert s.take_pauses() == []
    assert not s.pause("google", 100, "shorter")  # never shortens a pause
    assert s.paused("google") == 300
    assert not s.pause("other", 300, "other is many unrelated domains")
    assert s.admit("other").kind == "go"
