"""Generate a synthetic binary classification dataset: 8 measurements per row, and a label
that depends on them non-linearly (so the model needs the features of the next step)."""

import os
from pathlib import Path

import numpy as np

ROWS = int(os.environ.get("ROWS", "1000000"))  # 1M rows: data/raw.npy is 32 MB

rng = np.random.default_rng(seed=7)
raw = rng.normal(size=(ROWS, 8)).astype(np.float32)
signal = np.sin(2 * raw[:, 0]) + raw[:, 1] * raw[:, 2] - 0.5 * raw[:, 3] ** 2 + 0.3 * raw[:, 4]
noise = rng.normal(scale=0.5, size=ROWS)
labels = (signal + noise > 0).astype(np.float32)

out = Path("data")
out.mkdir(exist_ok=True)
np.save(out / "raw.npy", raw)
np.save(out / "labels.npy", labels)
print(f"generated {ROWS} rows, {labels.mean():.1%} positive")
