"""From rules to steps: the action graph, what each step's key holds, and `--affected`."""
