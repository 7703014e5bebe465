"""A sanity tool, NOT the benchmark: cosine similarity of each labelled pair in
tests/fixtures/semantic/pairs.jsonl, embedded by the server of scripts/with-embedder, and what a
threshold would do to each label if the cache compared the two questions of a pair and nothing else.

    scripts/with-embedder scripts/embedder python tools/embedder/similarity.py [PAIRS] [--worst N]

The benchmark (docs/BENCHMARKS.md) runs the same set through sluice's semantic cache, where a
question meets every stored entry of its stage and scope, not only its partner: its false-hit rate
can only be higher than the pairwise one printed here, and its tenant check does not depend on
similarity at all. Labels: `paraphrase` should share an answer (a pair at or above the threshold
is a hit; `style` light: the same words with a greeting, typo or filler, reworded: other words);
`near_miss` must not (at or above is a false hit); `other_tenant` is the same question
from two tenants, a false hit only under `scope: global` (listed for that case).
"""

import argparse
import json
import os
import sys
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = [round(0.80 + 0.01 * i, 2) for i in range(18)]  # 0.80 ... 0.97


def embed(url, model, texts, batch=256):
    out = []
    for i in range(0, len(texts), batch):
        body = json.dumps({"model": model, "input": texts[i:i + batch]}).encode()
        req = urllib.request.Request(url.rstrip("/") + "/embeddings", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            data = json.load(r)["data"]
        out.extend(d["embedding"] for d in sorted(data, key=lambda d: d["index"]))
    v = np.asarray(out, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def quantiles(s):
    q = np.quantile(s, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return " ".join(f"{x:6.3f}" for x in q) + f"  {s.mean():6.3f}"


def main():
    ap = argparse.ArgumentParser(description="pairwise similarity per label (sanity tool)")
    ap.add_argument("pairs", nargs="?", default=str(ROOT / "tests/fixtures/semantic/pairs.jsonl"))
    ap.add_argument("--worst", type=int, default=8, help="list the N riskiest pairs per label")
    args = ap.parse_args()
    url = os.environ.get("SLUICE_EMBEDDER_URL")
    if not url:
        sys.exit("similarity.py: SLUICE_EMBEDDER_URL is not set (run it under scripts/with-embedder)")
    model = os.environ.get("SLUICE_EMBEDDER_MODEL", "all-MiniLM-L6-v2")
    pairs = [json.loads(line) for line in open(args.pairs) if line.strip()]
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    index = {t: i for i, t in enumerate(texts)}
    vectors = embed(url, model, texts)
    for p in pairs:
        p["sim"] = float(vectors[index[p["a"]]] @ vectors[index[p["b"]]])

    by_label = defaultdict(list)
    for p in pairs:
        by_label[p["label"]].append(p)
    sims = {k: np.array([p["sim"] for p in v]) for k, v in by_label.items()}

    print("SANITY TOOL, NOT THE BENCHMARK: each pair compared with its partner only.")
    print(f"model {model}, {len(pairs)} pairs, {len(texts)} distinct questions, {args.pairs}\n")
    print("cosine similarity per label")
    print(f"{'label':<28} {'n':>4}    min    p10    p25 median    p75    p90    max   mean")
    for label, field, kinds in (("paraphrase", "style", ("light", "reworded")), ("near_miss", None, ()),
                                ("other_tenant", "variant", ("identical", "reworded"))):
        print(f"{label:<28} {len(sims[label]):>4}  {quantiles(sims[label])}")
        for kind in kinds:
            s = np.array([p["sim"] for p in by_label[label] if p.get(field) == kind])
            print(f"{'  ' + label + '/' + kind:<28} {len(s):>4}  {quantiles(s)}")
    print("\nnear_miss by what differs")
    kinds = defaultdict(list)
    for p in by_label["near_miss"]:
        kinds[p["differs"]].append(p["sim"])
    for kind, s in sorted(kinds.items(), key=lambda kv: -np.median(kv[1])):
        print(f"{'  ' + kind:<28} {len(s):>4}  {quantiles(np.array(s))}")

    print("\nper threshold (a pair at or above it would be answered from the other's entry)")
    light = np.array([p["sim"] for p in by_label["paraphrase"] if p.get("style") == "light"])
    reworded = np.array([p["sim"] for p in by_label["paraphrase"] if p.get("style") == "reworded"])
    print("           paraphrase hit %          near_miss     other_tenant")
    print("threshold    all  light reworded    false hit %   if scope: global %")
    for t in THRESHOLDS:
        c = [(x >= t).mean() * 100 for x in (sims["paraphrase"], light, reworded,
                                               sims["near_miss"], sims["other_tenant"])]
        print(f"   {t:.2f}   {c[0]:5.1f}  {c[1]:5.1f}    {c[2]:5.1f}          {c[3]:5.1f}          {c[4]:5.1f}")

    n = args.worst
    print(f"\nlowest {n} paraphrases (missed first)")
    for p in sorted(by_label["paraphrase"], key=lambda p: p["sim"])[:n]:
        print(f"  {p['sim']:.3f}  {p['a']!r} / {p['b']!r}")
    print(f"highest {n} near misses (false hits first)")
    for p in sorted(by_label["near_miss"], key=lambda p: -p["sim"])[:n]:
        print(f"  {p['sim']:.3f}  [{p['differs']}] {p['a']!r} / {p['b']!r}")


if __name__ == "__main__":
    main()
