"""What a mailbox provider's SMTP reply means: :func:`classify_reply`, pure and table-driven.

Slow that provider down (a deferral such as Gmail's ``421 4.7.28`` or Yahoo's
``[TSS04]``), a policy rejection that is no bad address (Microsoft's ``550 5.7.515``),
or nothing special. :mod:`digest.transport.providers` acts on the verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Action = Literal["throttle", "policy", "normal"]


@dataclass(frozen=True)
class Verdict:
    """What a reply asks for: ``throttle`` (slow the provider down; the message waits, no attempt
    counted), ``policy`` (rejected for the sender's setup or reputation, not the address: retried
    later, no bounce), or ``normal`` (the usual 4xx/5xx handling)."""

    action: Action
    rule: str = ""


@dataclass(frozen=True)
class _Rule:
    action: Action
    providers: frozenset[str]  # empty: any provider
    codes: tuple[int, int]  # basic reply code range, inclusive
    enhanced: str = ""  # regex that the whole enhanced status code must match
    text: str = ""  # regex searched in the reply text (case-insensitive)
    name: str = ""


def _rule(
    action: Action, providers: str, codes: tuple[int, int], enhanced: str = "", text: str = "", name: str = ""
) -> _Rule:
    return _Rule(action, frozenset(providers.split()), codes, enhanced, text, name)


# First match wins. Sources: docs/deliverability.md.
REPLY_RULES: tuple[_Rule, ...] = (
    # Gmail: "421 4.7.28 ... unusual rate of unsolicited mail" and "421 4.7.0 ... try again later".
    _rule("throttle", "google", (400, 499), r"4\.7\.28", name="gmail rate limit"),
    _rule("throttle", "google", (400, 499), r"4\.7\.0", r"unusual rate|try again later", "gmail deferral"),
    # Yahoo/AOL: "421 4.7.0 [TSS04] Messages from x temporarily deferred due to unexpected volume or user complaints".
    _rule("throttle", "yahoo", (400, 499), "", r"\[(TSS?0\d|IPTS0\d)\]", "yahoo deferral"),
    # Microsoft: "451 4.7.650 ... temporarily rate limited due to IP reputation", "451 4.7.500 Server busy".
    _rule("throttle", "microsoft", (400, 499), r"4\.7\.[56]\d\d", name="microsoft throttling"),
    _rule("throttle", "microsoft", (400, 499), "", r"\(S3150\)|\(S3140\)|\(S775\)|\(S843\)", "microsoft deferral"),
    # iCloud: "421 [HCM1] Your mail from x was deferred", "451 [BS02] Temporary server error".
    _rule("throttle", "apple", (400, 499), "", r"\[(HCM\d|BS0\d)\]", "icloud deferral"),
    # Microsoft's high-volume sender requirements (May 2025): "550 5.7.515 Access denied, sending
    # domain does not meet the required authentication level"; banned sending IP 5.7.606-649; S3150 block list.
    _rule("policy", "", (500, 599), r"5\.7\.515", name="microsoft authentication requirement"),
    _rule("policy", "microsoft", (500, 599), r"5\.7\.6[0-4]\d", name="microsoft banned sending IP"),
    _rule("policy", "microsoft", (500, 599), "", r"\(S3150\)|\(S3140\)|block ?list", "microsoft block list"),
    # RFC 7372 authentication failures (5.7.20-5.7.26: no valid DKIM, SPF, reverse DNS, DMARC),
    # Gmail's 5.7.27 (SPF) and its sender requirements 5.7.30 and 5.7.32 (alignment).
    _rule("policy", "", (500, 599), r"5\.7\.(2[0-7]|30|32)", name="sender authentication"),
    # 5.7.1 with a reputation or policy text (Gmail "likely unsolicited", Yahoo "[BL21] ... Spamhaus",
    # iCloud "[CS01] ... local policy"); Yahoo "554 5.7.9 Message not accepted for policy reasons".
    _rule("policy", "google yahoo microsoft apple", (500, 599), r"5\.7\.9", name="policy reasons"),
    _rule(
        "policy",
        "google yahoo microsoft apple",
        (500, 599),
        r"5\.7\.1",
        r"unsolicited|reputation|spamhaus|\[BL\d+\]|\[CS\d+\]|polic(y|ies)|block|spam",
        "policy rejection",
    ),
)

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_code(text: str) -> str:
    """The enhanced status code (RFC 3463) the reply text starts with, or ''."""
    m = _ENHANCED.match(text)
    return m.group(1) if m else ""


def classify_reply(provider: str, code: int, text: str) -> Verdict:
    """What a reply from (or relayed for) ``provider`` asks the sender to do; ``text`` follows the code."""
    enhanced = enhanced_code(text)
    for rule in REPLY_RULES:
        if rule.providers and provider not in rule.providers:
            continue
        if not rule.codes[0] <= code <= rule.codes[1]:
            continue
        if rule.enhanced and not re.fullmatch(rule.enhanced, enhanced):
            continue
        if rule.text and not re.search(rule.text, text, re.IGNORECASE):
            continue
        return Verdict(rule.action, rule.name)
    return Verdict("normal")
