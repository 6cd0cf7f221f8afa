"""``digest serve`` against ``digest send``: one drain path, one rate.

Both deliver the same edition to the same number of subscribers through the same
sink behind the same delay proxy (default 5 ms each way: a relay 10 ms away).
``send`` is ``send_digest`` (what ``digest send`` runs); ``serve`` is the planner
queueing the edition and the service's ``outbox`` job (``Service.send``) draining
it. Each runs on a fresh database; the rates and their ratio are printed.

    python -m bench.drain --subscribers 5000 [--delay-ms 5] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proxy import DelayProxy
from bench.send import CATEGORIES, Sink, cpu_s, create_subscribers, database, drafts
from digest.app.planner import run_due
from digest.app.send import send_digest
from digest.compose.dkim import signer_from_settings
from digest.core.clock import FixedClock
from digest.core.settings import DeliverySettings, DigestConfig, Settings
from digest.ingest.save import upsert_articles
from digest.service.runner import Service
from digest.store.db import make_engine, session_scope, upgrade


def settings_for(url: str, smtp_url: str, workdir: Path, args: argparse.Namespace) -> Settings:
    return Settings(
        database_url=url,
        smtp_url=smtp_url,  # type: ignore[arg-type]
        secret_key="bench-secret-bench-secret-bench-secret",  # type: ignore[arg-type]
        base_url="https://news.example.com",
        from_addr="The Briefing <briefing@news.example.com>",
        digests={
            "daily": DigestConfig(
                title="The Briefing", sections=CATEGORIES, max_articles=12, schedule="0 7 * * *", timezone="UTC"
            )
        },
        # RSA-2048 DKIM with --dkim-key (the relay benchmark's signed run); else unsigned.
        dkim=(
            {"selector": "bench", "domain": "news.example.com", "private_key_file": dkim_key}
            if (dkim_key := getattr(args, "dkim_key", None))
            else {}
        ),
        # None: the defaults (what an untuned installation gets).
        delivery=DeliverySettings(
            journal_dir=str(workdir / "journal"),
            **{k: v for k, v in (("connections", args.connections), ("processes", args.processes)) if v is not None},
        ),
    )


def one_run(mode: str, args: argparse.Namespace, smtp_url: str, sink: Sink) -> dict[str, Any]:
    now = datetime.now(UTC).replace(hour=7, minute=0, second=5, microsecond=0)
    clock = FixedClock(now)
    workdir = Path(tempfile.mkdtemp(prefix=f"digest-bench-{mode}-"))
    try:
        with database(args.database_url, workdir) as url:
            settings = settings_for(url, smtp_url, workdir, args)
            engine = make_engine(url)
            upgrade(engine)
            with session_scope(engine) as session:
                upsert_articles(session, drafts(now), now)
            create_subscribers(engine, args.subscribers, now)
            before = sink.received
            cpu0 = sum(cpu_s())
            t0 = time.perf_counter()
            if mode == "send":
                # As `digest send` does: the signer [dkim] describes (None: unsigned).
                signer = signer_from_settings(settings, clock)
                sent = send_digest(engine, settings, "daily", None, clock, signer=signer).sent
            else:
                run_due(engine, settings, "daily", clock)
                service = Service(settings, engine, clock=clock)
                service.send()
                sent = -1
            seconds = time.perf_counter() - t0  # before reading the sink's counter, which waits for it
            cpu = sum(cpu_s()) - cpu0  # this process and the sender processes it started
            received = sink.received - before
            sent = received if sent < 0 else sent
            engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"mode": mode, "sent": sent, "received": received, "seconds": round(seconds, 2),
            "msgs_per_s": round(received / seconds, 1),
            "cpu_ms_per_msg": round(1000 * cpu / max(received, 1), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=5000)
    p.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    p.add_argument("--delay-ms", type=float, default=5.0, help="added latency each way (default 5: a 10 ms RTT)")
    p.add_argument("--processes", type=int, default=None, help="default: [delivery] processes (one per core)")
    p.add_argument("--connections", type=int, default=None, help="per server, all processes (default: [delivery])")
    p.add_argument("--sink", choices=("auto", "postfix", "aiosmtpd"), default="auto")
    p.add_argument("--rounds", type=int, default=2, help="alternating send/serve rounds (the median is kept)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    sink = Sink(args.sink).start()
    proxy = DelayProxy(sink.port, args.delay_ms / 1000).start()
    try:
        runs = [one_run(mode, args, proxy.url, sink) for _ in range(args.rounds) for mode in ("send", "serve")]
    finally:
        proxy.stop()
        sink.stop()
    rate = {
        m: sorted(r["msgs_per_s"] for r in runs if r["mode"] == m)[(args.rounds - 1) // 2] for m in ("send", "serve")
    }
    result = {
        "subscribers": args.subscribers,
        "rtt_ms": 2 * args.delay_ms,
        "pool": f"{args.processes or 'default'} process(es), {args.connections or 'default'} connections",
        "sink": sink.kind,
        "runs": runs,
        "send_msgs_per_s": rate["send"],
        "serve_msgs_per_s": rate["serve"],
        "serve_over_send": round(rate["serve"] / rate["send"], 3) if rate["send"] else None,
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
