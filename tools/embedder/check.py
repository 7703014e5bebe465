"""Checks tools/embedder/minilm.py against similarities sentence-transformers publishes for
all-MiniLM-L6-v2 (sbert.net: the Quickstart's "Calculate the embedding similarities" and the
"Semantic Textual Similarity" usage page, both printed to 4 decimals). Exits 1 on a mismatch.

    scripts/embedder check
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm import MiniLM  # noqa: E402

# (sentence a, sentence b, cosine similarity as published)
REFERENCE = [
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
    ("The new movie is awesome", "The dog plays in the garden", 0.0543),
    ("The new movie is awesome", "The new movie is so great", 0.8939),
    ("The new movie is awesome", "A woman watches TV", -0.0502),
    ("The cat sits outside", "The dog plays in the garden", 0.2838),
    ("The cat sits outside", "The new movie is so great", -0.0029),
    ("The cat sits outside", "A woman watches TV", 0.1310),
    ("A man is playing guitar", "The dog plays in the garden", 0.2277),
    ("A man is playing guitar", "The new movie is so great", -0.0136),
    ("A man is playing guitar", "A woman watches TV", -0.0327),
]
TOLERANCE = 6e-4  # published to 4 decimals; float32 sums in another order


def main():
    model = MiniLM(sys.argv[1])
    vectors, _ = model.embed([s for a, b, _ in REFERENCE for s in (a, b)])
    norms = np.linalg.norm(vectors, axis=1)
    worst = 0.0
    for i, (a, b, want) in enumerate(REFERENCE):
        got = float(vectors[2 * i] @ vectors[2 * i + 1])
        worst = max(worst, abs(got - want))
        mark = "ok " if abs(got - want) <= TOLERANCE else "BAD"
        print(f"{mark} {got:+.4f} (published {want:+.4f})  {a!r} / {b!r}")
    print(f"largest difference {worst:.5f}; vector norms {norms.min():.6f}..{norms.max():.6f}")
    ok = worst <= TOLERANCE and np.allclose(norms, 1.0, atol=1e-5)
    print("embedder check: " + ("matches sentence-transformers" if ok else "MISMATCH"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
