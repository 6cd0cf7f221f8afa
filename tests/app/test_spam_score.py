"""A real digest, DKIM-signed as sent, scored by SpamAssassin: at most 1.0 (issue: deliverability).

``spamassassin -L -t`` runs the local rules only (no DNS blocklists, no network), on the
bytes the SMTP server received. Skipped where SpamAssassin is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.app.send import send_digest
from digest.compose.dkim import generate_key, signer_from_settings
from digest.core.clock import FixedClock
from digest.core.settings import Settings
from digest.transport.sink import SmtpSink
from tests.conftest import STANDARD_DRAFTS, seed

SPAMASSASSIN = shutil.which("spamassassin")
MAX_SCORE = 1.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SPAMASSASSIN is None, reason="spamassassin not installed (apt-get install spamassassin)"),
]


def score(message: bytes) -> tuple[float, str]:
    """SpamAssassin's score of ``message`` and the rules it hit."""
    assert SPAMASSASSIN is not None
    done = subprocess.run([SPAMASSASSIN, "-L", "-t"], input=message, capture_output=True, timeout=120, check=False)
    found = re.search(
        rb"X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+\s+tests=([^\n]*(?:\n\s+[^\n]*)*)", done.stdout
    )
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    return float(found.group(1)), b" ".join(found.group(2).split()).decode()


def test_a_signed_digest_scores_at_most_one_point(
    engine: Engine, settings: Settings, sink: SmtpSink, clock: FixedClock, tmp_path: Path
) -> None:
    key = tmp_path / "dkim.pem"
    key.write_bytes(generate_key().private_pem)
    settings.dkim = settings.dkim.model_copy(
        update={"selector": "d2026", "domain": "news.example.com", "private_key_file": str(key)}
    )
    seed(engine, STANDARD_DRAFTS, [("ana@example.org", "Ana Lima", None)])

    report = send_digest(engine, settings, "daily", None, clock, signer=signer_from_settings(settings, clock))

    assert report.sent == 1
    (message,) = sink.messages
    points, rules = score(message.data)
    assert points <= MAX_SCORE, rules
