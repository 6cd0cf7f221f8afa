"""Delivery to a relay some milliseconds away: ``digest send`` and ``digest serve`` against Postfix's ``smtp-source``.

For each round-trip time (``--rtt-ms``, default 10 and 50; 0 = loopback, no
proxy) it starts the delay proxy (:mod:`bench.proxy`) in front of Postfix's
``smtp-sink``, and measures in the same run, through the same proxy:

- the reference: ``smtp-source -d -s 128`` (and ``-s 16``), Postfix's C client,
  sending messages of the digest's size over reused sessions;
- ``send``: ``send_digest`` (what ``digest send`` runs), building the edition and
  draining it, with DEFAULT ``[delivery]`` settings;
- ``serve``: the planner queueing the edition and the service's ``outbox`` job
  draining it (``Service.send``), default settings too.

It prints msg/s and each rate's ratio to ``smtp-source -s 128`` (at 0 ms, to
``smtp-source -s 16``, the loopback reference), and for each run ``*_cpu_ms``: the
milliseconds of CPU a message of the client, the proxy and the sink
(``client/proxy/sink``): on two cores the proxy's and the sink's CPU is taken from
the client, as a relay on another machine would not.

    python -m bench.relay [--rtt-ms 10 --rtt-ms 50] [--subscribers 20000] [--database-url URL] [--dkim]

``--dkim`` adds a third run, ``send`` with an RSA-2048 DKIM key (as ``[dkim]`` configures
it), and prints ``dkim_ratio``: its rate over the unsigned ``send`` of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

from bench.drain import one_run
from bench.proxy import DelayProxy
from bench.send import SMTP_SOURCE, Sink, cpu_s, smtp_source

TARGETS = {10.0: 0.7, 50.0: 0.5, 0.0: 0.9}  # share of the reference to reach, by RTT


def one_rtt(rtt: float, args: argparse.Namespace, sink: Sink) -> dict[str, Any]:
    proxy = DelayProxy(sink.port, rtt / 2000).start() if rtt else None
    port = proxy.port if proxy else sink.port
    url = f"smtp://127.0.0.1:{port}"
    try:
        result: dict[str, Any] = {"rtt_ms": rtt}
        if SMTP_SOURCE and sink.kind == "postfix":
            n = args.reference_messages or args.subscribers
            for sessions in (16, 128):
                marks = _cpu_marks(proxy, sink)
                result[f"smtp_source_{sessions}"] = round(smtp_source(port, sessions, n, args.message_bytes, sink), 1)
                result[f"smtp_source_{sessions}_cpu_ms"] = _cpu_per_msg(marks, _cpu_marks(proxy, sink), n)
        for mode in ("send", "serve", *(("send_dkim",) if args.dkim else ())):
            signed = argparse.Namespace(**{**vars(args), "dkim_key": args.dkim_key if mode == "send_dkim" else None})
            marks = _cpu_marks(proxy, sink)
            run = one_run(mode.removesuffix("_dkim"), signed, url, sink)
            after = _cpu_marks(proxy, sink)
            result[mode] = run["msgs_per_s"]
            result[f"{mode}_seconds"] = run["seconds"]
            # The client's own CPU is measured around the send alone (not the database set-up).
            client = marks[0] + run["cpu_ms_per_msg"] * run["received"] / 1000
            result[f"{mode}_cpu_ms"] = _cpu_per_msg(marks, (client, *after[1:]), run["received"])
            if run["received"] != args.subscribers:
                result[f"{mode}_problem"] = f"{run['received']} of {args.subscribers} received"
        if args.dkim:
            result["dkim_ratio"] = round(result["send_dkim"] / result["send"], 3)
    finally:
        if proxy:
            proxy.stop()
    reference = result.get("smtp_source_16" if not rtt else "smtp_source_128")
    if reference:
        for mode in ("send", "serve"):
            result[f"{mode}_ratio"] = round(result[mode] / reference, 3)
        result["target_ratio"] = TARGETS.get(rtt)
    return result


def _cpu_marks(proxy: DelayProxy | None, sink: Sink) -> tuple[float, float, float]:
    """CPU seconds used so far by the client (this process and its waited children), the proxy and the sink."""
    return sum(cpu_s()), proxy.cpu_s() if proxy else 0.0, sink.cpu_s()


def _cpu_per_msg(before: tuple[float, ...], after: tuple[float, ...], messages: int) -> str:
    """``client/proxy/sink`` milliseconds of CPU a message: where the machine's two cores went."""
    return "/".join(f"{1000 * (b - a) / max(messages, 1):.2f}" for a, b in zip(before, after, strict=True))


def _dkim_key() -> str:
    """A fresh RSA-2048 key in a temporary PEM file (the bench signs; nobody verifies against DNS)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd, path = tempfile.mkstemp(prefix="digest-bench-dkim-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n\n")[0])
    p.add_argument("--rtt-ms", type=float, action="append", help="round trip to the relay (repeatable; default 10, 50)")
    p.add_argument("--subscribers", type=int, default=20_000)
    p.add_argument("--reference-messages", type=int, default=0, help="smtp-source messages (default: --subscribers)")
    p.add_argument("--message-bytes", type=int, default=35_000, help="smtp-source message size (the digest's)")
    p.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    p.add_argument("--processes", type=int, default=None, help="default: [delivery] processes (one per core)")
    p.add_argument("--connections", type=int, default=None, help="default: [delivery] connections")
    p.add_argument("--dkim", action="store_true", help="also send signed (RSA-2048): the signed/unsigned rate ratio")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.dkim_key = _dkim_key() if args.dkim else None
    sink = Sink("auto").start()
    try:
        results = []
        for rtt in args.rtt_ms or [10.0, 50.0]:
            results.append(one_rtt(rtt, args, sink))
            if not args.json:  # as it goes: a run takes minutes
                print("  ".join(f"{k}={v}" for k, v in results[-1].items()), flush=True)
    finally:
        sink.stop()
    load = [round(x, 2) for x in os.getloadavg()]
    out = {"sink": sink.kind, "subscribers": args.subscribers, "load_after": load, "runs": results}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"sink: {sink.kind}, subscribers: {args.subscribers}, load average after: {out['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
