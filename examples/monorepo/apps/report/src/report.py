"""Combine the libraries' outputs into one report."""

from pathlib import Path

libs = Path("../../libs")
lines = ["# Report", ""]
for words in sorted((libs / "words" / "dist").glob("*.txt")):
    lines.append(f"{words.stem}: {', '.join(words.read_text().split())}")
squares = (libs / "numbers" / "dist" / "squares.txt").read_text().splitlines()
lines.append(f"squares: {len(squares)}, largest {squares[-1].split()[1]}")
Path("dist").mkdir(exist_ok=True)
Path("dist/report.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
