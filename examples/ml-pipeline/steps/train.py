"""Logistic regression by full-batch gradient descent on the first 80% of the rows."""

import os
from pathlib import Path

import numpy as np

EPOCHS = int(os.environ.get("EPOCHS", "40"))
RATE = 0.5

features = np.load("features/features.npy")
labels = np.load("data/labels.npy")
train = int(0.8 * len(labels))
x = np.hstack([features[:train], np.ones((train, 1), dtype=np.float32)])
y = labels[:train]

w = np.zeros(x.shape[1], dtype=np.float32)
for epoch in range(EPOCHS):
    p = 1 / (1 + np.exp(-(x @ w)))
    w -= RATE * (x.T @ (p - y)) / train
    if epoch % 10 == 0 or epoch == EPOCHS - 1:
        loss = -np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7))
        print(f"epoch {epoch:3d}  loss {loss:.4f}")

out = Path("model")
out.mkdir(exist_ok=True)
np.savez(out / "model.npz", weights=w, epochs=EPOCHS)
