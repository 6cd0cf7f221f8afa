"""``digest webhooks add|list|remove|enable|deliver`` through the real entry point, to a loopback receiver."""

from __future__ import annotations

import json
import re

from tests.cli.test_cli import Run
from tests.webhook_receiver import Receiver


def test_add_prints_the_secret_once_and_deliver_posts_signed_events(run: Run) -> None:
    receiver = Receiver().start()
    try:
        added = run("webhooks", "add", receiver.url, "--events", "subscriber.unsubscribed,edition.sent")
        secret = re.search(r"secret: (whsec_\S+)", added.stdout)
        assert added.returncode == 0 and secret, added.stderr
        receiver.secret = secret.group(1)
        assert run("subscribers", "add", "ana@example.org").returncode == 0
        assert run("subscribers", "unsubscribe", "ana@example.org").returncode == 0

        delivered = run("webhooks", "deliver")
        listed = run("webhooks", "list", "--json")
    finally:
        receiver.stop()

    assert delivered.stdout.strip() == "1 delivered, 0 failed", delivered.stderr
    assert [r.verified for r in receiver.received] == [True]
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["events"] == ["subscriber.unsubscribed", "edition.sent"]
    assert (row["pending"], row["consecutive_failures"], row["disabled_at"]) == (0, 0, None)
    assert "secret" not in row and receiver.secret not in listed.stdout


def test_an_unknown_event_is_one_line_naming_the_known_ones(run: Run) -> None:
    done = run("webhooks", "add", "https://cms.example.com/hooks", "--events", "delivery.opened")

    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "error: --events: unknown event 'delivery.opened'; choose from delivery.sent,delivery.failed,"
        "subscriber.unsubscribed,subscriber.bounced,subscriber.complained,edition.sent"
    ]


def test_removing_a_missing_webhook_is_one_line(run: Run) -> None:
    removed = run("webhooks", "remove", "42")

    assert removed.returncode != 0
    assert removed.stderr.strip() == "error: no webhook with id 42"
