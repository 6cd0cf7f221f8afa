"""Content -> message bytes: render, inline, MIME, DKIM. No database, no sockets."""
