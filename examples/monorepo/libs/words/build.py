"""Normalize each word list in src/ into dist/: lowercase, sorted, de-duplicated."""

from pathlib import Path

out = Path("dist")
out.mkdir(exist_ok=True)
for source in sorted(Path("src").glob("*.txt")):
    words = sorted({w.lower() for w in source.read_text().split()})
    (out / source.name).write_text("\n".join(words) + "\n")
    print(f"{source.name}: {len(words)} words")
