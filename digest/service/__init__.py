"""The background service shell: APScheduler jobs, leadership, signals."""
