"""Write the squares of the numbers in src/numbers.txt, up to $NUMBERS_LIMIT of them."""

import os
from pathlib import Path

limit = int(os.environ.get("NUMBERS_LIMIT", "100"))
numbers = [int(n) for n in Path("src/numbers.txt").read_text().split()][:limit]
Path("dist").mkdir(exist_ok=True)
Path("dist/squares.txt").write_text("".join(f"{n} {n * n}\n" for n in numbers))
print(f"{len(numbers)} squares")
