"""Use cases: send, plan, subscriptions, inbound mail, status, demo. Shells call these."""
