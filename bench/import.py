"""Benchmark: ``digest subscribers import`` rows/s, and queueing an edition's deliveries.

    python -m bench.import [--rows 100000,1000000] [--database-url URL ...] [--json]

For each database (SQLite when no ``--database-url`` is given; repeat the option
for several) and each row count it writes a CSV of realistic rows (varied domains,
names, timezones, topics, some status and breaking cells, one row in a thousand
invalid), imports it into an empty database through the real command (a child
process: its CPU time and peak RSS are read from GNU time), and checks what was
stored. In the same run, on the same rows, it measures these references:

- ``bulk``: the same valid rows written by the import's own bulk insert
  (``digest.store.bulk.insert_rows``: binary ``COPY`` on PostgreSQL, the driver's
  executemany on SQLite), 5,000 a call, values encoded beforehand, no validation and
  no lookups at all: the floor of the write;
- ``check``: the CPU time of reading the file and checking every row
  (``SubscriberCheck.fields``), no database: the floor of the validation;
- ``email-validator``: ``validate_email`` (no DNS) alone on each address of the first
  20,000 rows, no cache: what the address check would cost without the fast path;
- ``row by row``: the previous import, one ``add_subscriber`` per row (a lookup, a
  suppression query and an INSERT each), on the first ``--sample`` rows.

Then, on the database the largest import filled, it queues one edition's
deliveries for every active subscriber (``queue_deliveries``, as ``digest send``
and the service do) and reports the time. With a PostgreSQL URL each run works in
a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from bench.send import create_subscribers, database
from digest.core.errors import InputError
from digest.outbox.ledger import queue_deliveries
from digest.store.bulk import insert_encoder, insert_rows
from digest.store.db import make_engine, session_scope, upgrade
from digest.store.models import Delivery, Edition, Subscriber
from digest.store.subscriber_check import KnownTopics, SubscriberCheck, known_topics
from digest.store.subscribers import add_subscriber

DIGEST = str(Path(sys.executable).parent / "digest")
SECTIONS = ["World", "Business", "Science", "Technology", "Culture", "Sport"]
DOMAINS = [f"{name}.{tld}" for name in ("example", "mail", "post", "inbox", "news", "web", "home") for tld in
           ("org", "com", "net", "de", "fr", "co.uk", "io")]  # fmt: skip
ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Australia/Sydney", "UTC", "Europe/Paris", "Asia/Kolkata", "America/Sao_Paulo", ""]  # fmt: skip
TOPICS = ["", "World", "World, Business", "Science, Technology", "Culture", "Sport, World", "Business"]
FIRST = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lea", "Mo", "Nia"]
LAST = ["Lima", "Berg", "Wu", "Okafor", "Novak", "Smith", "Rossi", "Sato", "Khan", "Meyer", "Silva", "Haas"]
BAD = ["not-an-email", "ana@", "@example.org", "two@@example.org", "ana@example", "dot.@example.org"]
CHUNK = 5000


def write_csv(path: Path, rows: int, seed: int = 10) -> int:
    """``rows`` data rows (one in a thousand invalid); returns how many are valid."""
    rnd = random.Random(seed)
    valid = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["email", "name", "timezone", "topics", "status", "breaking"])
        for i in range(rows):
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            if i % 1000 == 999:
                email = rnd.choice(BAD)
            else:
                email = f"{first.lower()}.{last.lower()}{i}@{rnd.choice(DOMAINS)}"
                valid += 1
            status = "pending" if i % 50 == 0 else ""
            breaking = "false" if i % 7 == 0 else ""
            out.writerow([email, f"{first} {last}", rnd.choice(ZONES), rnd.choice(TOPICS), status, breaking])
    return valid


def write_config(path: Path, url: str, max_bytes: int) -> Path:
    lines = [
        f'database_url = "{url}"',
        'secret_key = "bench-secret"',
        'base_url = "https://news.example.com"',
        'from_addr = "The Briefing <briefing@news.example.com>"',
        f"import_max_bytes = {max_bytes}",
        "[digests.daily]",
        'title = "The Briefing"',
        f"sections = {json.dumps(SECTIONS)}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TIME = shutil.which("time", path="/usr/bin:/bin")


def run_import(config: Path, csv_path: Path, workdir: Path) -> tuple[float, float, float, int]:
    """Seconds, CPU seconds (user + system), peak RSS (MB) and exit code of ``digest subscribers import``.

    In a child process. The peak RSS comes from GNU time when installed: a child's own
    ``ru_maxrss`` starts at its parent's size (fork before exec), and this process is not small.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    report = workdir / "rss.txt"
    cmd = [DIGEST, "--config", str(config), "subscribers", "import", str(csv_path)]
    if TIME:
        cmd = [TIME, "-f", "%M %U %S", "-o", str(report), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if TIME:
        kb, user, system = report.read_text().split()[-3:]
        rss, cpu = int(kb) / 1024, float(user) + float(system)
    else:
        rss, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    return seconds, cpu, rss, os.waitstatus_to_exitcode(status)


def valid_rows(csv_path: Path, now: datetime, limit: int | None = None) -> list[dict[str, Any]]:
    """The file's valid rows as subscriber columns, for the references (no validation: the bad ones are known)."""
    out: list[dict[str, Any]] = []
    with csv_path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if limit is not None and len(out) >= limit:
                break
            if row["email"] in BAD:
                continue
            out.append(
                {
                    "email": row["email"],
                    "email_key": row["email"].casefold(),
                    "name": row["name"],
                    "status": row["status"] or "active",
                    "timezone": row["timezone"] or None,
                    "topics": [t.strip() for t in row["topics"].split(",") if t.strip()],
                    "breaking": row["breaking"] != "false",
                    "frequency": "daily",
                    "bounce_count": 0,
                    "soft_bounce_streak": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return out


def bulk_rate(engine: Engine, rows: list[dict[str, Any]]) -> float:
    """Rows/s of the import's bulk insert of ``rows`` (values encoded beforehand), 5,000 a call, one transaction.

    Binary ``COPY`` on PostgreSQL, executemany on SQLite; no validation, no lookups:
    the floor of the import's writing.
    """
    table = Subscriber.__table__  # type: ignore[attr-defined]
    columns = list(rows[0])
    with engine.connect() as conn:
        encoder = insert_encoder(conn, table, columns)
        encoded = [encoder.encode([r[c] for c in columns]) for r in rows]
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for i in range(0, len(encoded), CHUNK):
            insert_rows(conn, table, columns, encoded[i : i + CHUNK], encoded=True)
    return len(rows) / (time.perf_counter() - t0)


def check_rate(csv_path: Path) -> float:
    """Rows per CPU second of reading ``csv_path`` and checking each row as the import does, no database."""
    check = SubscriberCheck(KnownTopics(tuple(SECTIONS))).fields
    t0 = time.process_time()
    rows = bad = 0
    with csv_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for email, name, zone, topics, status, _breaking in reader:
            rows += 1
            try:
                check(email.strip(), name, zone or None, topics or None, status or None, None, None, None, None, "")
            except InputError:
                bad += 1
    return rows / (time.process_time() - t0)


def email_validator_rate(csv_path: Path, limit: int = 20_000) -> float:
    """Addresses per CPU second of email-validator itself (no DNS, nothing remembered), on the first ``limit``."""
    with csv_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        addresses = [row[0] for _, row in zip(range(limit), reader, strict=False)]
    t0 = time.process_time()
    bad = 0
    for address in addresses:
        try:
            validate_email(address, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError:
            bad += 1
    return len(addresses) / (time.process_time() - t0)


def row_by_row_rate(engine: Engine, csv_path: Path, sample: int, now: datetime) -> float:
    """Rows/s of the previous import: one ``add_subscriber`` (update allowed) per row, one transaction."""
    with session_scope(engine) as session:
        known = known_topics(session, [SECTIONS])
    rows = valid_rows(csv_path, now, sample)
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        for r in rows:
            add_subscriber(
                session, r["email"], now, name=r["name"], timezone=r["timezone"], topics=r["topics"],
                status=r["status"], update=True, topics_known=known, breaking=r["breaking"],
            )  # fmt: skip
    return len(rows) / (time.perf_counter() - t0)


def queue_seconds(engine: Engine, now: datetime) -> tuple[float, int, float]:
    """Seconds to queue one edition for every active subscriber (``queue_deliveries``, one transaction).

    Also the reference, in the same run: the statement as it was before (INSERT ...
    SELECT ... ON CONFLICT DO NOTHING) into a table with the delivery table's former
    schema (two foreign keys, six indexes).
    """
    with session_scope(engine) as session:
        edition = Edition(digest="daily", slot="bench", built_at=now, article_count=0)
        session.add(edition)
        session.flush()
        edition_id = edition.id
    assert edition_id is not None
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        queued = queue_deliveries(session, edition_id, now)
    seconds = time.perf_counter() - t0
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Delivery.__table__)).scalar_one()  # type: ignore[attr-defined]
    assert stored == queued, (stored, queued)
    pg = engine.dialect.name == "postgresql"
    stamp, key = ("TIMESTAMPTZ", "SERIAL PRIMARY KEY") if pg else ("DATETIME", "INTEGER PRIMARY KEY")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE delivery_before (id {key}, edition_id INTEGER NOT NULL REFERENCES edition (id), "
            "subscriber_id INTEGER NOT NULL REFERENCES subscriber (id), status VARCHAR(20) NOT NULL, "
            "attempts INTEGER NOT NULL, last_response VARCHAR(1000), message_id VARCHAR(300), "
            f"claimed_by VARCHAR(200), lease_until {stamp}, next_attempt_at {stamp}, sent_at {stamp}, "
            f"created_at {stamp} NOT NULL, CONSTRAINT uq_before UNIQUE (edition_id, subscriber_id))"
        )
        for i, cols in enumerate(("edition_id", "subscriber_id", "status, next_attempt_at")):
            conn.exec_driver_sql(f"CREATE INDEX ix_before_{i} ON delivery_before ({cols})")
        conn.exec_driver_sql(
            "CREATE INDEX ix_before_pending ON delivery_before (edition_id, id) "
            "WHERE status IN ('queued', 'claimed', 'failed_temporary')"
        )
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO delivery_before (edition_id, subscriber_id, status, attempts, created_at) "
                "SELECT :e, id, 'queued', 0, :now FROM subscriber WHERE status = 'active' "
                "ON CONFLICT (edition_id, subscriber_id) DO NOTHING"
            ),
            {"e": edition_id, "now": now if pg else now.replace(tzinfo=None).isoformat(sep=" ")},
        )
    return seconds, queued, time.perf_counter() - t0


def queue_only(url: str | None, n: int, workdir: Path) -> dict[str, Any]:
    """The queue measurement alone, on ``n`` subscribers made in one statement."""
    now = datetime.now(UTC).replace(microsecond=0)
    with database(url, workdir / f"queue-{n}") as db:
        engine = make_engine(db)
        upgrade(engine)
        create_subscribers(engine, n, now)
        seconds, queued, before = queue_seconds(engine, now)
        engine.dispose()
    return {"backend": engine.dialect.name, "subscribers": n, "queued": queued, "queue_s": round(seconds, 2),
            "queue_before_s": round(before, 2), "speed_up": round(before / seconds, 2)}  # fmt: skip


def measure(url: str | None, rows: int, args: argparse.Namespace, workdir: Path, queue: bool) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    csv_path = workdir / f"subscribers-{rows}.csv"
    valid = write_csv(csv_path, rows)
    result: dict[str, Any] = {"rows": rows, "valid": valid, "csv_mb": round(csv_path.stat().st_size / 1e6, 1)}
    with database(url, workdir / f"import-{rows}") as db:
        engine = make_engine(db)
        upgrade(engine)
        config = write_config(workdir / "digest.toml", db, max(50_000_000, 2 * csv_path.stat().st_size))
        seconds, cpu, rss, code = run_import(config, csv_path, workdir)
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(Subscriber.__table__)).scalar_one()  # type: ignore[attr-defined]
        assert stored == valid and code == 3, f"stored {stored} of {valid} valid rows, exit {code}"
        result.update(backend=engine.dialect.name, import_s=round(seconds, 2), rows_per_s=round(rows / seconds),
                      cpu_s=round(cpu, 2), peak_rss_mb=round(rss, 1))  # fmt: skip
        if queue:
            seconds, result["queued"], before = queue_seconds(engine, now)
            result["queue_s"], result["queue_before_s"] = round(seconds, 2), round(before, 2)
        engine.dispose()
    with database(url, workdir / f"ref-{rows}") as db:
        engine = make_engine(db)
        upgrade(engine)
        result["bulk_rows_per_s"] = round(bulk_rate(engine, valid_rows(csv_path, now)))
        engine.dispose()
    result["check_rows_per_cpu_s"] = round(check_rate(csv_path))
    result["email_validator_per_cpu_s"] = round(email_validator_rate(csv_path))
    if args.sample:
        with database(url, workdir / f"old-{rows}") as db:
            engine = make_engine(db)
            upgrade(engine)
            result["row_by_row_rows_per_s"] = round(row_by_row_rate(engine, csv_path, args.sample, now))
            engine.dispose()
    result["vs_bulk"] = round(result["rows_per_s"] / result["bulk_rows_per_s"], 2)
    if args.sample:
        result["vs_row_by_row"] = round(result["rows_per_s"] / result["row_by_row_rows_per_s"], 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--database-url", action="append", help="PostgreSQL URL (repeat; default: SQLite)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite as well as the --database-url ones")
    parser.add_argument("--sample", type=int, default=10_000, help="rows for the row-by-row reference (0: skip)")
    parser.add_argument("--queue-only", type=int, metavar="N", help="only queue an edition for N subscribers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    urls: list[str | None] = list(args.database_url or [])
    if not urls or args.sqlite:
        urls.insert(0, None)
    if args.queue_only:
        workdir = Path(tempfile.mkdtemp(prefix="digest-bench-queue-"))
        try:
            for url in urls:
                print(json.dumps(queue_only(url, args.queue_only, workdir)), flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    counts = [int(n) for n in args.rows.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="digest-bench-import-"))
    results = []
    try:
        for url in urls:
            for n in counts:
                results.append(measure(url, n, args, workdir, queue=n == max(counts)))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    header = ["backend", "rows", "import s", "rows/s", "CPU s", "peak RSS MB", "bulk rows/s", "x bulk",
              "check rows/CPU s", "email-validator/CPU s", "row-by-row rows/s", "x row-by-row", "queue s",
              "queue before s"]  # fmt: skip
    print(" | ".join(header))
    for r in results:
        cells = [r["backend"], f"{r['rows']:,}", r["import_s"], f"{r['rows_per_s']:,}", r["cpu_s"], r["peak_rss_mb"],
                 f"{r['bulk_rows_per_s']:,}", r["vs_bulk"], f"{r['check_rows_per_cpu_s']:,}",
                 f"{r['email_validator_per_cpu_s']:,}", f"{r.get('row_by_row_rows_per_s', 0):,}",
                 r.get("vs_row_by_row", ""), r.get("queue_s", ""), r.get("queue_before_s", "")]  # fmt: skip
        print(" | ".join(str(c) for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
