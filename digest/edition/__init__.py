"""What goes into an edition: selection and schedules, pure functions of (articles, settings, now)."""
