"""Use cases: send, resend and preview, the planner, subscriptions and their notices, bounces, inbound mail,
the archive, status, the service's jobs, the demo. The shells (cli, service, web) call these."""
