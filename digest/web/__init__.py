"""The web shell: subscriber pages, one-click unsubscribe, archive."""
