"""The workload simulator: realistic multi-tenant traffic and incident scenarios, sent through
the real receiver (`spanline simulate`, `spanline demo`)."""
