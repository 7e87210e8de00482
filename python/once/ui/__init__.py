"""What a run prints: the console, the live progress line, `once why`'s explanations."""
