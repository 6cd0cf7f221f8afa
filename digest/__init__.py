"""digest: a scheduled breaking-news digest mailer.

The package is a one-way pipeline of stages: ingest -> store -> select -> render
-> inline -> message -> transport -> deliver. The CLI, the service and the web app
are thin shells that wire dependencies and call these library functions.
"""

from __future__ import annotations

__version__ = "0.1.0"
