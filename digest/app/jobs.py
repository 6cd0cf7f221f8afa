"""The service's jobs as data: ids, triggers and what each does (``digest serve``, ``digest status``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest.core.settings import Settings
from digest.edition.schedule import cron_trigger


@dataclass(frozen=True)
class JobSpec:
    """One job of the service, as derived from the settings."""

    id: str
    trigger: BaseTrigger
    leader_only: bool
    description: str


def job_specs(settings: Settings) -> list[JobSpec]:
    """The service's jobs, with fixed ids; every trigger carries an explicit timezone."""
    svc = settings.service
    specs = [
        JobSpec(
            "leader",
            IntervalTrigger(seconds=svc.leader_interval.total_seconds(), timezone=UTC),
            False,
            f"take or keep the scheduler role, every {svc.leader_interval.total_seconds():g}s",
        )
    ]
    for name, cfg in settings.digests.items():
        specs.append(
            JobSpec(
                f"digest:{name}",
                cron_trigger(cfg.schedule, cfg.timezone, f"digests.{name}.schedule"),
                True,
                f"edition of {name} at {cfg.schedule!r} {cfg.timezone}",
            )
        )
    tick = svc.tick.total_seconds()
    specs += [
        JobSpec(
            "slots",
            IntervalTrigger(seconds=tick, timezone=UTC),
            True,
            f"local-time slots and catch-up, every {tick:g}s",
        ),
        JobSpec("feeds", IntervalTrigger(seconds=tick, timezone=UTC), True, f"poll due feeds, every {tick:g}s"),
        JobSpec(
            "alerts",
            IntervalTrigger(seconds=svc.alerts_interval.total_seconds(), timezone=UTC),
            True,
            f"queue breaking alerts, every {svc.alerts_interval.total_seconds():g}s",
        ),
        JobSpec(
            "outbox",
            IntervalTrigger(seconds=svc.outbox_interval.total_seconds(), timezone=UTC),
            False,
            f"send queued deliveries, every {svc.outbox_interval.total_seconds():g}s",
        ),
        JobSpec(
            "webhooks",
            IntervalTrigger(seconds=settings.webhooks.interval.total_seconds(), timezone=UTC),
            False,
            f"POST due webhook events, every {settings.webhooks.interval.total_seconds():g}s",
        ),
    ]
    return specs
