"""Use cases: each function owns one transaction's worth of work; routes and CLI call these."""
