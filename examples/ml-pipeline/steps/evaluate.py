"""Accuracy of the trained model on the held-out 20% of the rows."""

import json
from pathlib import Path

import numpy as np

features = np.load("features/features.npy")
labels = np.load("data/labels.npy")
w = np.load("model/model.npz")["weights"]
test = int(0.8 * len(labels))
x = np.hstack([features[test:], np.ones((len(labels) - test, 1), dtype=np.float32)])
scores = 1 / (1 + np.exp(-(x @ w)))
accuracy = float(np.mean((scores > 0.5) == (labels[test:] > 0.5)))

out = Path("reports")
out.mkdir(exist_ok=True)
np.save(out / "scores.npy", scores.astype(np.float32))
(out / "metrics.json").write_text(json.dumps({"accuracy": round(accuracy, 4)}, indent=2) + "\n")
print(f"accuracy on {len(scores)} held-out rows: {accuracy:.1%}")
