"""``python -m tests.kill_sender CONFIG AT POINT N``: a ``digest send`` that kills itself with SIGKILL.

POINT says where, around the N-th message the server accepted (its 250 reply):
``in-flight`` before the journal line is written (the one case SMTP cannot tell
apart from a message never sent), ``after-journal`` right after it, before the
batch is recorded in the database.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime

from digest.app.send import send_digest
from digest.core.clock import FixedClock
from digest.core.settings import load_settings
from digest.outbox.journal import BatchJournal
from digest.store.db import make_engine


def main(config: str, at: str, point: str, n: int) -> None:
    note = BatchJournal.note
    seen = 0

    def killing_note(self: BatchJournal, delivery_id: int, message_id: str, when: datetime) -> None:
        nonlocal seen
        seen += 1
        if seen == n and point == "in-flight":
            os.kill(os.getpid(), signal.SIGKILL)
        note(self, delivery_id, message_id, when)
        if seen == n and point == "after-journal":
            os.kill(os.getpid(), signal.SIGKILL)

    BatchJournal.note = killing_note  # type: ignore[method-assign]
    settings = load_settings(config)
    send_digest(make_engine(settings.database_url), settings, None, None, FixedClock(datetime.fromisoformat(at)))
    raise SystemExit("the sender was never killed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
