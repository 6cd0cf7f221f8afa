"""Tables, engine and sessions, migrations, row-level queries."""
