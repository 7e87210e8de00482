"""What a workspace keeps in `.once/` between runs, and the lock around it."""
