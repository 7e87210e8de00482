"""Random Fourier features (an approximation of an RBF kernel) reduced to 24 columns: the
expensive step of the pipeline, written in chunks so memory stays bounded."""

from pathlib import Path

import numpy as np

WIDTH = 256  # random features per row before the projection; the cost of this step
KEEP = 24  # columns written: features/features.npy is ROWS x 24 float32 (96 MB for 1M rows)
CHUNK = 100_000  # rows per chunk: CHUNK x WIDTH float32 is 100 MB of scratch memory

raw = np.load("data/raw.npy")
rng = np.random.default_rng(seed=11)
weights = rng.normal(scale=0.7, size=(raw.shape[1], WIDTH)).astype(np.float32)
phase = rng.uniform(0, 2 * np.pi, size=WIDTH).astype(np.float32)
projection = rng.normal(size=(WIDTH, KEEP)).astype(np.float32) / np.sqrt(WIDTH)

features = np.empty((raw.shape[0], KEEP), dtype=np.float32)
for start in range(0, raw.shape[0], CHUNK):
    block = np.cos(raw[start : start + CHUNK] @ weights + phase)
    features[start : start + CHUNK] = block @ projection
features -= features.mean(axis=0)
features /= features.std(axis=0) + 1e-6

out = Path("features")
out.mkdir(exist_ok=True)
np.save(out / "features.npy", features)
print(f"featurized {features.shape[0]} rows into {KEEP} columns")
