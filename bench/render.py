"""Render and inline cost per variant vs per subscriber.

    python -m bench.render [--stories 20] [--subscribers 1000] [--json]

Measures, in one run on one machine: the Jinja2 render of a digest, premailer with
its defaults, premailer as digest configures it (``digest.compose.inline``), the
per-recipient fill of the prepared message, and what a 1,000-subscriber send costs
when render+inline run per subscriber (naive) vs once per content variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from premailer import Premailer

from digest.compose.inline import inline_css
from digest.compose.message import Recipient
from digest.compose.render import Markers, build_context, make_environment, render_variant
from digest.compose.variants import make_variants
from digest.core.settings import DigestConfig, Settings
from digest.edition.select import select_articles
from digest.store.models import Article

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
WORDS = (
    "harbour tunnel lender asteroid bread weather library election glacier ferry market vaccine".split()  # noqa: SIM905
)


def articles(n: int) -> list[Article]:
    out = []
    for i in range(n):
        title = f"{WORDS[i % len(WORDS)].title()} {WORDS[(i * 5 + 3) % len(WORDS)]} report number {i} of the day"
        out.append(
            Article(
                id=i + 1,
                guid=f"g{i}",
                url=f"https://news.example.com/{i}",
                title=title,
                summary="A two-sentence summary of the story that tells the reader what happened. " * 2,
                source="Example Wire",
                category=["World", "Business", "Science", "Technology"][i % 4],
                published_at=NOW - timedelta(minutes=5 + i),
                ingested_at=NOW,
                updated_at=NOW,
                word_count=600,
                breaking=i == 0,
            )
        )
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", type=int, default=20)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    settings = Settings(base_url="https://news.example.com", from_addr="Brief <b@news.example.com>")
    cfg = DigestConfig(sections=["World", "Business", "Science", "Technology"], max_articles=args.stories)
    content = select_articles(articles(args.stories), cfg, NOW, base_url=settings.base_url)
    env = make_environment()
    markers = Markers.new()
    ctx = build_context(
        digest_name="daily",
        digest_title="The Daily Briefing",
        edition_date=NOW.date(),
        slot="2026-11-25",
        view=content.view(),
        base_url=settings.base_url,
        postal_address=settings.postal_address,
        markers=markers,
    )
    rendered = render_variant(env, "daily", cfg.subject, ctx, markers)
    html = rendered.html

    def premailer_defaults() -> str:
        return Premailer(html, cssutils_logging_level=logging.CRITICAL, allow_network=False).transform()

    settings.digests["daily"] = cfg
    prepared = make_variants(settings, "daily", "2026-11-25", NOW, content).for_topics(())
    assert prepared is not None
    r = Recipient("ana@example.org", "Ana Lima", 1, "https://n/u/T", "https://n/p/T", "mailto:u@n?subject=T")

    t_render = best(lambda: render_variant(env, "daily", cfg.subject, ctx, markers), args.repeat)
    t_pm_default = best(premailer_defaults, args.repeat)
    t_inline = best(lambda: inline_css(html), args.repeat)
    t_fill = best(lambda: prepared.fill(r, NOW), args.repeat * 20)
    n = args.subscribers
    variants = 2
    naive = n * (t_render + t_pm_default + t_fill)
    ours = variants * (t_render + t_inline) + n * t_fill
    result = {
        "html_kb": round(len(prepared.filled_html(r).encode()) / 1024, 1),
        "render_ms": round(t_render * 1000, 2),
        "premailer_default_ms": round(t_pm_default * 1000, 2),
        "inline_digest_ms": round(t_inline * 1000, 2),
        "fill_ms": round(t_fill * 1000, 3),
        "subscribers": n,
        "naive_send_cpu_s": round(naive, 2),
        "variant_send_cpu_s": round(ours, 2),
        "speedup": round(naive / ours, 1),
        "inline_speedup_vs_defaults": round(t_pm_default / t_inline, 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"HTML size after inlining          {result['html_kb']} KB")
    print(f"Jinja2 render (one variant)       {result['render_ms']} ms")
    print(f"premailer, library defaults       {result['premailer_default_ms']} ms")
    ratio = result["inline_speedup_vs_defaults"]
    print(f"premailer, as digest.compose.inline runs  {result['inline_digest_ms']} ms  ({ratio}x faster)")
    print(f"per-recipient fill                {result['fill_ms']} ms")
    print(f"{n} subscribers, render+inline per subscriber: {result['naive_send_cpu_s']} s CPU")
    print(f"{n} subscribers, once per variant ({variants}):     {result['variant_send_cpu_s']} s CPU")
    print(f"ratio: {result['speedup']}x")


if __name__ == "__main__":
    main()
