"""Mailbox providers: which one a recipient is at, what its replies mean, and how fast it is sent to.

- :class:`ProviderMap`: recipient domain -> provider (``google``, ``yahoo``,
  ``microsoft``, ``apple``, ``other``). Well-known domains come from a built-in
  table; any other domain is grouped by its MX hosts (a Google Workspace domain is
  ``google``), through an injected dnspython resolver, cached for the answer's TTL.
  A failed or slow lookup is ``other``: classification never holds sending up for
  more than one short timeout, and not at all while lookups keep failing.
- :func:`~digest.transport.replies.classify_reply` (its own module): a provider's SMTP
  reply -> what to do (slow that provider down, a policy rejection that is no bad
  address, or nothing special).
- :class:`ProviderShaper`: per-provider limits (messages in flight, messages a
  minute evenly spaced, messages per connection) and pauses, shared by every
  connection of a process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal

import cachetools
import dns.exception
import dns.resolver

from digest.core.dns import make_resolver
from digest.core.settings import PROVIDERS, ProviderLimits, Settings
from digest.transport.replies import Verdict

log = logging.getLogger(__name__)

OTHER = "other"

# Domains whose provider is known without DNS. A family name ("yahoo") covers its
# country domains too (yahoo.co.uk, hotmail.fr, live.com.au): see _family.
_DOMAINS = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "google.com": "google",
    "ymail.com": "yahoo",
    "rocketmail.com": "yahoo",
    "aim.com": "yahoo",
    "msn.com": "microsoft",
    "windowslive.com": "microsoft",
    "passport.com": "microsoft",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
}
_FAMILIES = {"yahoo": "yahoo", "aol": "yahoo", "outlook": "microsoft", "hotmail": "microsoft", "live": "microsoft"}
# Same name, another company's mail (Yahoo Japan has its own servers).
_NOT_FAMILY = {"yahoo.co.jp"}

# MX host suffix -> provider (the MX rollup).
_MX_SUFFIXES = (
    (".google.com", "google"),
    (".googlemail.com", "google"),
    (".yahoodns.net", "yahoo"),
    (".protection.outlook.com", "microsoft"),
    (".outlook.com", "microsoft"),
    (".mx.microsoft", "microsoft"),
    (".icloud.com", "apple"),
)

# RFC 2606 / RFC 6761 names: never in anyone's DNS, never looked up.
_RESERVED = ("example", "test", "invalid", "localhost", "local")
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")


def _family(domain: str) -> str | None:
    """``hotmail.co.uk`` -> microsoft: a family name followed by a country or generic suffix only."""
    first, _, rest = domain.partition(".")
    if first not in _FAMILIES or domain in _NOT_FAMILY or not rest:
        return None
    labels = rest.split(".")
    if len(labels) > 2 or any(len(label) > 3 for label in labels):
        return None
    return _FAMILIES[first]


def known_provider(domain: str) -> str | None:
    """The provider of a well-known mailbox domain, or None when only DNS can tell."""
    domain = domain.strip().rstrip(".").lower()
    return _DOMAINS.get(domain) or _family(domain)


def provider_of_mx(hosts: Iterable[str]) -> str:
    """The provider whose servers the MX hosts are (the first host that matches decides), else other."""
    for host in hosts:
        name = "." + host.strip().rstrip(".").lower()
        for suffix, provider in _MX_SUFFIXES:
            if name.endswith(suffix):
                return provider
    return OTHER


def _reserved(domain: str) -> bool:
    last = domain.rsplit(".", 1)[-1]
    return (
        "." not in domain
        or last in _RESERVED
        or domain.startswith("[")  # an address literal
        or any(domain == d or domain.endswith("." + d) for d in _RESERVED_DOMAINS)
    )


def domain_of(address: str) -> str:
    """The domain of an e-mail address, lower case, without a trailing dot."""
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class ProviderMap:
    """Recipient domain -> mailbox provider, with MX lookups through ``resolver`` (None: no lookups).

    Answers are cached (LRU, each for its DNS TTL between ``min_ttl`` and ``max_ttl``;
    a failure for ``failure_ttl``). After ``failures`` lookups in a row failed (the
    resolver is down or slow) no lookup is made for ``cooldown`` seconds: unknown
    domains are ``other`` meanwhile, so a dead resolver costs sending almost nothing.
    Thread-safe.
    """

    def __init__(
        self,
        resolver: dns.resolver.Resolver | None,
        *,
        size: int = 10_000,
        min_ttl: float = 300,
        max_ttl: float = 86_400,
        failure_ttl: float = 300,
        failures: int = 3,
        cooldown: float = 60,
        workers: int = 8,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self.min_ttl, self.max_ttl, self.failure_ttl = min_ttl, max_ttl, failure_ttl
        self.failures, self.cooldown = failures, cooldown
        self._now = now
        self._cache: cachetools.TLRUCache[str, tuple[str, float]] = cachetools.TLRUCache(
            size, ttu=lambda _key, value, at: at + value[1], timer=now
        )
        self._lock = threading.Lock()
        self._failed = 0
        self._resting_until = 0.0
        self.lookups = 0  # MX queries asked (tests and status)

    def _without_dns(self, domain: str) -> str | None:
        """The provider if known without asking DNS now (table, reserved name, cache, resting), else None."""
        known = known_provider(domain)
        if known is not None:
            return known
        if self.resolver is None or _reserved(domain):
            return OTHER
        with self._lock:
            cached = self._cache.get(domain)
            if cached is not None:
                return cached[0]
            if self._now() < self._resting_until:
                return OTHER
        return None

    def provider(self, address_or_domain: str) -> str:
        """The provider of an address (or a bare domain); may wait for one MX lookup."""
        domain = domain_of(address_or_domain)
        found = self._without_dns(domain)
        if found is not None:
            return found
        provider, ttl, failed = self._lookup(domain)
        with self._lock:
            self._cache[domain] = (provider, ttl)
            if not failed:
                self._failed = 0
            else:
                self._failed += 1
                if self._failed >= self.failures:
                    self._resting_until = self._now() + self.cooldown
                    self._failed = 0
                    log.warning(
                        "MX lookups failing: recipients of unknown domains count as other for %.0fs", self.cooldown
                    )
        return provider

    def providers(self, addresses: Iterable[str], budget: float = 2.0) -> dict[str, str]:
        """The provider of each address, waiting at most ``budget`` seconds for DNS in all.

        The MX lookups of different domains run side by side (``workers`` threads); a
        domain whose lookup is not done in time counts as other for this batch, and
        its answer, when it comes, is cached for the next.
        """
        addresses = list(addresses)
        by_domain: dict[str, str] = {}
        todo: list[str] = []
        for domain in {domain_of(a) for a in addresses}:
            found = self._without_dns(domain)
            if found is None:
                todo.append(domain)
            else:
                by_domain[domain] = found
        if todo:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mx")
            futures = {self._pool.submit(self.provider, d): d for d in todo}
            done, _ = wait(futures, timeout=budget)
            for future, domain in futures.items():
                by_domain[domain] = future.result() if future in done else OTHER
        return {a: by_domain[domain_of(a)] for a in addresses}

    def close(self) -> None:
        """Wait for the lookups still running (a batch stops waiting at its budget, they do not) and stop."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _lookup(self, domain: str) -> tuple[str, float, bool]:
        """(provider, seconds to keep the answer, whether the lookup failed)."""
        assert self.resolver is not None
        with self._lock:
            self.lookups += 1
        try:
            answer = self.resolver.resolve(domain, "MX", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return OTHER, self.max_ttl, False
        except dns.exception.DNSException as exc:
            log.info("MX lookup of %s failed (%s): counted as other", domain, type(exc).__name__)
            return OTHER, self.failure_ttl, True
        hosts = [r.exchange.to_text() for r in sorted(answer, key=lambda r: r.preference)]  # type: ignore[attr-defined]
        ttl = min(self.max_ttl, max(self.min_ttl, float(answer.rrset.ttl if answer.rrset is not None else 0)))
        return provider_of_mx(hosts), ttl, False


# The cache lives as long as the process (a service drains every few seconds).
_MAPS: dict[tuple[bool, float], ProviderMap] = {}
_MAPS_LOCK = threading.Lock()


def provider_map(settings: Settings) -> ProviderMap:
    """The process-wide :class:`ProviderMap` of ``[delivery] mx_lookup`` (the system's resolver)."""
    d = settings.delivery
    key = (d.mx_lookup, d.mx_lookup_timeout)
    with _MAPS_LOCK:
        if key not in _MAPS:
            _MAPS[key] = ProviderMap(make_resolver(timeout=d.mx_lookup_timeout) if d.mx_lookup else None)
        return _MAPS[key]


# ---------------------------------------------------------------- per-provider limits and pauses


@dataclass(frozen=True)
class Admission:
    """May a message to a provider start? ``go`` (a slot is taken: call ``finished`` after), ``full``
    (at its cap: try again when one of its messages finishes), ``wait`` ``seconds`` (its rate, or the
    end of a short pause) or ``defer`` it ``seconds`` (paused that long: back to the outbox, no
    attempt counted)."""

    kind: Literal["go", "full", "wait", "defer"]
    seconds: float = 0.0
    reason: str = ""


@dataclass
class _State:
    limits: ProviderLimits
    in_flight: int = 0
    next_at: float = 0.0
    paused_until: float = 0.0
    reason: str = ""


class ProviderShaper:
    """Each provider's limits and pause, shared by every connection of a process (thread-safe).

    ``hold`` is how long a paused provider's message is kept waiting in memory;
    longer pauses send it back to the outbox until the pause ends (the batch it came
    in must not wait for it).
    """

    def __init__(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        hold: float = 5.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self.hold = hold
        self._states = {name: _State(limits.get(name, ProviderLimits())) for name in (*PROVIDERS, *limits)}
        self._lock = threading.Lock()
        # Pauses a reply caused here, not yet handed to :meth:`take_pauses` (to be shared).
        self._news: set[str] = set()

    def _state(self, provider: str) -> _State:
        return self._states.get(provider) or self._states[OTHER]

    def limits(self, provider: str) -> ProviderLimits:
        return self._state(provider).limits

    def admit(self, provider: str) -> Admission:
        """Take a slot for one message to ``provider`` if its pause, cap and rate allow it now."""
        with self._lock:
            st = self._state(provider)
            now = self._now()
            if now < st.paused_until:
                left = st.paused_until - now
                return Admission("wait" if left <= self.hold else "defer", left, st.reason)
            lim = st.limits
            if lim.connections and st.in_flight >= lim.connections:
                return Admission("full", 0.0, "at its limit of messages in flight")
            if now < st.next_at:
                return Admission("wait", st.next_at - now, "at its rate")
            if lim.per_minute:
                st.next_at = max(now, st.next_at) + 60.0 / lim.per_minute
            st.in_flight += 1
            return Admission("go")

    def finished(self, provider: str) -> None:
        """A message admitted by :meth:`admit` is done (whatever its outcome)."""
        with self._lock:
            st = self._state(provider)
            st.in_flight = max(0, st.in_flight - 1)

    def paused(self, provider: str) -> float:
        """Seconds left of the provider's pause (0: not paused)."""
        with self._lock:
            return max(0.0, self._state(provider).paused_until - self._now())

    def react(self, provider: str, verdict: Verdict, reply: str) -> float:
        """Pause ``provider`` as ``verdict`` asks (never ``other``: that is many unrelated domains).

        Returns the seconds it is paused for from now (0: not paused). A pause is
        logged once, a policy rejection as an error: someone must fix the setup.
        """
        if verdict.action == "normal" or provider not in self._states or provider == OTHER:
            return 0.0
        with self._lock:
            st = self._states[provider]
            pause = st.limits.deferral_pause if verdict.action == "throttle" else st.limits.policy_pause
            now = self._now()
            was_paused = now < st.paused_until
            st.paused_until = max(st.paused_until, now + pause.total_seconds())
            st.reason = f"{provider} {verdict.rule}: {reply}"[:300]
            left = st.paused_until - now
            self._news.add(provider)
        if was_paused:
            return left
        if verdict.action == "policy":
            log.error(
                "%s rejects our mail for policy (%s), not for bad addresses: no bounce counted, "
                "%s paused %.0fs; fix the sending setup (`digest doctor`): %s",
                provider,
                verdict.rule,
                provider,
                left,
                reply,
            )
        else:
            log.warning(
                "%s defers (%s): %s paused %.0fs, other providers go on: %s",
                provider,
                verdict.rule,
                provider,
                left,
                reply,
            )
        return left

    def take_pauses(self) -> list[tuple[str, float, str]]:
        """The pauses replies caused here since the last call: (provider, seconds left, reason).

        For the caller to share with other processes; a pause learnt through
        :meth:`pause` is not returned.
        """
        with self._lock:
            if not self._news:
                return []
            now = self._now()
            taken = [(p, self._states[p].paused_until - now, self._states[p].reason) for p in sorted(self._news)]
            self._news.clear()
        return [t for t in taken if t[1] > 0]

    def pause(self, provider: str, seconds: float, reason: str) -> bool:
        """Pause ``provider`` for ``seconds`` from now, as another process was told to; never shortens a pause.

        Returns True when this made it pause longer (the first time: logged once).
        """
        if seconds <= 0 or provider not in self._states or provider == OTHER:
            return False
        with self._lock:
            st = self._states[provider]
            now = self._now()
            # Within a second: the same pause read again (its end went through a wall clock and back).
            if now + seconds <= st.paused_until + 1.0:
                return False
            was_paused = now < st.paused_until
            st.paused_until = now + seconds
            st.reason = reason[:300]
        if not was_paused:
            log.info("%s paused %.0fs, as another sender was told: %s", provider, seconds, reason)
        return True
