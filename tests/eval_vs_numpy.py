#!/usr/bin/env python3
"""`duet eval` against an independent numpy implementation of the README's formulas.

Random embeddings and labels, both metrics; the numpy side ranks with a stable argsort (ties by
gallery row) in float64. Euclidean data are small integers so that float32 and float64 agree
exactly (and ties occur); cosine data are low-dimensional Gaussians, whose score gaps dwarf float32
rounding. Also checks that a query class absent from the gallery is skipped and counted.
Usage: eval_vs_numpy.py path/to/duet
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def reference(q, g, ql, gl, metric, ks=(100, 200)):
    q = q.astype(np.float64)
    g = g.astype(np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
        s = q @ g.T
    else:
        s = -((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    out = {"map_all": [], **{f"map@{k}": [] for k in ks}, **{f"p@{k}": [] for k in ks}}
    skipped = 0
    for i in range(len(q)):
        order = np.argsort(-s[i], kind="stable")
        rel = (gl[order] == ql[i]).astype(np.float64)
        R = rel.sum()
        if R == 0:
            skipped += 1
            continue
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        out["map_all"].append((prec * rel).sum() / R)
        for k in ks:
            out[f"map@{k}"].append((prec[:k] * rel[:k]).sum() / min(R, k))
            out[f"p@{k}"].append(rel[:k].sum() / k)
    res = {key: float(np.mean(v)) for key, v in out.items()}
    res["queries"] = len(q) - skipped
    res["skipped"] = skipped
    return res


def run(duet, d, q, g, ql, gl, metric):
    paths = {}
    for name, arr in (("q", q), ("g", g)):
        paths[name] = os.path.join(d, name + ".npy")
        np.save(paths[name], arr.astype(np.float32))
    for name, lab in (("ql", ql), ("gl", gl)):
        paths[name] = os.path.join(d, name + ".txt")
        with open(paths[name], "w") as f:
            f.write("\n".join(f"c{x}" for x in lab) + "\n")
    cmd = [duet, "eval", "--query-emb", paths["q"], "--query-labels", paths["ql"], "--gallery-emb",
           paths["g"], "--gallery-labels", paths["gl"], "--metric", metric, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DUET_QUIET": "1"})
    if r.returncode != 0:
        sys.exit(f"duet eval failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def main():
    duet = sys.argv[1]
    rng = np.random.default_rng(0)
    failures = 0
    cases = [
        ("euclidean", lambda n, d: rng.integers(-2, 3, size=(n, d)).astype(np.float32), 80, 500, 6, 12),
        ("cosine", lambda n, d: rng.standard_normal((n, d)).astype(np.float32), 60, 400, 4, 10),
        ("cosine", lambda n, d: rng.standard_normal((n, d)).astype(np.float32), 30, 150, 3, 5),
    ]
    with tempfile.TemporaryDirectory() as d:
        for metric, make, nq, ng, dim, classes in cases:
            q, g = make(nq, dim), make(ng, dim)
            ql = rng.integers(0, classes + 1, size=nq)  # class `classes` never in the gallery
            gl = rng.integers(0, classes, size=ng)
            got = run(duet, d, q, g, ql, gl, metric)
            want = reference(q, g, ql, gl, metric)
            if set(got) != set(want):
                print(f"FAIL keys {sorted(got)} != {sorted(want)}")
                failures += 1
                continue
            for key in want:
                if abs(got[key] - want[key]) > 1e-6:
                    print(f"FAIL {metric} nq={nq} ng={ng}: {key} duet={got[key]} numpy={want[key]}")
                    failures += 1
            print(f"{metric} nq={nq} ng={ng} d={dim}: map_all={got['map_all']:.6f} "
                  f"(numpy {want['map_all']:.6f}), skipped={got['skipped']}")
            if want["skipped"] == 0:
                print("FAIL: the case was meant to contain skipped queries")
                failures += 1
    print(f"{3 - min(failures, 3)} passed, {min(failures, 3)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
