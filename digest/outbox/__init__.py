"""The durable outbox: ledger (claim, record, release), journal and recovery, the sender and its processes."""
