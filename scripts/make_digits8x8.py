"""Write ``pcircuits/data/digits8x8.npz``, the 8x8 digits shipped inside the package.

Run once from the repository root with scikit-learn installed::

    python scripts/make_digits8x8.py

The file holds scikit-learn's copy of the UCI optical-digits test set (see
``pcircuits/data/README.md`` for its source and licence) in the file's order: ``images``,
uint8 of shape (1797, 8, 8) with grey levels 0..16, and ``labels``, uint8 of shape (1797,)
with the digits 0..9. :func:`pcircuits.datasets.load_digits_8x8` reads it and makes the split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

TARGET = Path(__file__).resolve().parents[1] / "pcircuits" / "data" / "digits8x8.npz"


def main() -> None:
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    if not (np.array_equal(images, digits.images) and np.array_equal(labels, digits.target)):
        raise SystemExit("make_digits8x8: the digits do not fit uint8 exactly")
    np.savez_compressed(TARGET, images=images, labels=labels)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes): images {images.shape}, labels {labels.shape}")


if __name__ == "__main__":
    main()
