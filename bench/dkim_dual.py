"""What Ed25519 dual signing (RFC 8463) adds to RSA signing: ``python -m bench.dkim_dual [--messages N] [--json]``.

One edition of 7 stories (about 35 KB filled) is filled once per recipient before
timing; then, in interleaved rounds (order rotated each round, so load from
elsewhere hits both alike), the same messages are signed by :class:`DkimSigner`
with the RSA-2048 key only and with the RSA key plus an Ed25519 key:

- ``sign``: ``DkimSigner.sign`` one message after another (all in this thread);
- ``sign_stream``: ``DkimSigner.sign_stream`` (the RSA step in a worker thread,
  as the sender uses it; the Ed25519 step stays in the caller's thread).

Medians over rounds; a sample of each kind is verified with dkimpy (both signatures
of the dual ones).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from bench.dkim import NOW, edition, recipients
from digest.compose.dkim import DkimSigner, generate_key, static_dns, verify_each

VARIANTS = ("rsa sign", "dual sign", "rsa sign_stream", "dual sign_stream")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per variant, in all (default 2000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds)
    chunk = max(10, args.messages // rounds)

    prepared = edition(7)
    messages = [prepared.fill(r, NOW) for r in recipients(chunk)]
    rsa_key, ed_key = generate_key(2048), generate_key(algorithm="ed25519")
    rsa = DkimSigner("bench", "news.example.com", rsa_key.private_pem)
    dual = DkimSigner(
        "bench",
        "news.example.com",
        rsa_key.private_pem,
        ed25519_selector="benche",
        ed25519_private_key_pem=ed_key.private_pem,
    )
    dns = static_dns(
        {
            "bench._domainkey.news.example.com": rsa_key.txt_value(),
            "benche._domainkey.news.example.com": ed_key.txt_value(),
        }
    )

    def sign(signer: DkimSigner) -> Callable[[], None]:
        def run() -> None:
            for m in messages:
                signer.sign(m)

        return run

    def stream(signer: DkimSigner) -> Callable[[], None]:
        def run() -> None:
            for _ in signer.sign_stream(iter(messages)):
                pass

        return run

    runs = {
        "rsa sign": sign(rsa),
        "dual sign": sign(dual),
        "rsa sign_stream": stream(rsa),
        "dual sign_stream": stream(dual),
    }
    wall: dict[str, list[float]] = {k: [] for k in VARIANTS}
    cpu: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for k in VARIANTS:  # warm-up
        runs[k]()
    for i in range(rounds):
        for k in VARIANTS[i % len(VARIANTS) :] + VARIANTS[: i % len(VARIANTS)]:
            c0, t0 = time.process_time(), time.perf_counter()
            runs[k]()
            wall[k].append((time.perf_counter() - t0) / chunk)
            cpu[k].append((time.process_time() - c0) / chunk)
    rsa.close()
    dual.close()

    verified = all(verify_each(rsa.sign(m), dns) == {"rsa-sha256": True} for m in messages[:10]) and all(
        verify_each(dual.sign(m), dns) == {"rsa-sha256": True, "ed25519-sha256": True} for m in messages[:10]
    )
    med = {k: statistics.median(v) for k, v in wall.items()}
    report = {
        "messages_per_variant": chunk * rounds,
        "rounds": rounds,
        "message_bytes": len(messages[0]),
        "ms_per_message": {k: round(v * 1000, 4) for k, v in med.items()},
        "messages_per_second": {k: round(1 / v) for k, v in med.items()},
        "cpu_ms_per_message": {k: round(statistics.median(v) * 1000, 4) for k, v in cpu.items()},
        "dual_over_rsa_sign": round(med["dual sign"] / med["rsa sign"], 3),
        "dual_over_rsa_sign_stream": round(med["dual sign_stream"] / med["rsa sign_stream"], 3),
        "signatures_verified_by_dkimpy": verified,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"DKIM dual-signing benchmark: {chunk * rounds} messages of {len(messages[0]):,} bytes per variant, "
            f"{rounds} interleaved rounds (medians)"
        )
        print(f"{'variant':<18}{'ms/msg':>10}{'msg/s':>10}{'cpu ms/msg':>12}")
        for k in VARIANTS:
            print(
                f"{k:<18}{report['ms_per_message'][k]:>10.3f}{report['messages_per_second'][k]:>10,}"  # type: ignore[index]
                f"{report['cpu_ms_per_message'][k]:>12.3f}"  # type: ignore[index]
            )
        print(
            f"dual / RSA only: {report['dual_over_rsa_sign']} (sign), "
            f"{report['dual_over_rsa_sign_stream']} (sign_stream)"
        )
        print(f"signatures verified by dkimpy: {verified}")
    return 0 if verified else 1


if __name__ == "__main__":
    raise SystemExit(main())
