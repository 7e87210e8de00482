"""Running steps: the prelude (lock and walk), the pipeline, settling hits, the scheduler."""
