"""Running steps: the prelude (lock and walk), the fast path, the session, the scheduler."""
