"""State that every worker of a cluster must agree on, kept in Redis (REDIS_URL).

Rate counters, stream-slot leases and session revocations. Without REDIS_URL (the
embedded default) none of this runs and gateway/limits.py counts in the process.
While Redis is away the limits fall back to per-worker counting and the fast path
trusts no cached session (spec, CLUSTER-7).
"""
