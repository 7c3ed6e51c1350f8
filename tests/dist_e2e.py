#!/usr/bin/env python3
"""Data-parallel Phase II on c10d/Gloo with 2 processes on 127.0.0.1: 2 ranks at half the
minibatch each train the mapper 1 rank trains (within float noise), rank 0 writes it, the ranks
end with identical parameters (train-mapper checks and fails otherwise), a rank that dies or
never arrives is one clear error on the others within the timeout, and a malformed torchrun
environment is refused.

Usage: dist_e2e.py path/to/duet
Constructed data (no shared files): 6 classes of 24-d query and gallery embeddings, each class
a cluster seen through a different random linear map per domain.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from dist_util import free_port, kill_rank_1

duet = sys.argv[1]
passed, failed = [], []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail else ""))
    (passed if ok else failed).append(name)


def write_emb(path, x, classes, domain):
    np.save(path, x.astype(np.float32))
    with open(path[:-4] + ".tsv", "w") as f:
        f.write(f"# dim={x.shape[1]}\n# domain={domain}\n# format=duet-embeddings-v1\n# rows={len(x)}\n"
                f"# source=constructed\npath\tclass\tdomain\n")
        for i, c in enumerate(classes):
            f.write(f"{domain}/{c}/{i}.png\t{c}\t{domain}\n")


with tempfile.TemporaryDirectory() as tmp:
    rng = np.random.default_rng(3)
    K, per, dim = 6, 20, 24
    means = rng.normal(size=(K, dim))
    cls = [f"c{k}" for k in range(K) for _ in range(per)]
    for domain, seed in (("sketch", 1), ("photo", 2)):
        m = np.random.default_rng(seed).normal(size=(dim, dim)) / dim ** 0.5
        x = np.repeat(means, per, axis=0) @ m + 0.3 * rng.normal(size=(K * per, dim))
        write_emb(os.path.join(tmp, f"{domain}.npy"), x, cls, domain)
    mapper = lambda epochs: ["train-mapper", "--query-emb", f"{tmp}/sketch.npy", "--gallery-emb", f"{tmp}/photo.npy",
            "--loss", "triplet", "--hard-negatives", "--margin", "0.5", "--hidden", "64", "--code", "16",
            "--epochs", str(epochs), "--seed", "4", "-t", "1"]
    base = mapper(3)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}

    def run(args, extra_env=None, timeout=300):
        return subprocess.run([duet] + args, capture_output=True, text=True, env={**env, **(extra_env or {})},
                              timeout=timeout)

    r1 = run(base + ["-o", f"{tmp}/one.pt"])
    r2 = run(base + ["-o", f"{tmp}/two.pt", "--nproc", "2"])
    check("1 rank and --nproc 2 both exit 0", r1.returncode == 0 and r2.returncode == 0,
          (r1.stderr + r2.stderr)[-600:])
    j1 = json.loads(r1.stdout) if r1.returncode == 0 else {}
    lines = r2.stdout.strip().splitlines()
    j2 = json.loads(lines[0]) if r2.returncode == 0 and lines else {}
    check("--nproc 2: one report (rank 0's), naming 2 ranks", len(lines) == 1 and j2.get("ranks") == 2 and
          j1.get("ranks") == 1, r2.stdout[-300:])
    check("only the mapper file is written (no worker's temporary file left)",
          sorted(os.listdir(tmp)) == ["one.pt", "photo.npy", "photo.tsv", "sketch.npy", "sketch.tsv", "two.pt"],
          str(sorted(os.listdir(tmp))))
    # Same minibatches, each split over the ranks; the gradients are summed in another order, so
    # the results agree up to float noise, carried through 3 epochs of Adam.
    codes = {}
    for name in ("one", "two"):
        r = run(["map", "--mapper", f"{tmp}/{name}.pt", "--emb", f"{tmp}/sketch.npy", "-o", f"{tmp}/{name}-codes.npy"])
        codes[name] = np.load(f"{tmp}/{name}-codes.npy") if r.returncode == 0 else None
    ok = codes["one"] is not None and codes["two"] is not None
    diff = float(np.abs(codes["one"] - codes["two"]).max() / np.abs(codes["one"]).max()) if ok else float("inf")
    check("2 ranks at half the minibatch give 1 rank's mapper (codes within 1e-3 of their scale)", diff < 1e-3,
          f"max relative difference {diff:.2e}")
    l1, l2 = j1.get("epoch_loss", []), j2.get("epoch_loss", [])
    check("and the same epoch losses (within 1e-3 relative)", len(l1) == 3 and len(l2) == 3 and
          all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(l1, l2)), f"{l1} vs {l2}")

    # torchrun's way: one process per rank from the environment. Kill rank 1 mid-training: rank 0
    # must stop with one error line, not hang.
    alive, rc, err0, took = kill_rank_1(duet, mapper(100000) + ["-o", f"{tmp}/long.pt"], env, after=4)
    check("a killed rank makes the other exit with one clear error, not hang",
          alive and rc == 1 and "another rank stopped" in err0 and "internal error" not in err0
          and not os.path.exists(f"{tmp}/long.pt"), f"rc={rc} after {took:.1f}s: {err0.strip().splitlines()[-1][-300:] if err0.strip() else ''}")

    # A rank that never arrives: the rendezvous gives up after DUET_DIST_TIMEOUT.
    t0 = time.time()
    r = run(base + ["-o", f"{tmp}/x.pt"], {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                           "MASTER_PORT": str(free_port()), "DUET_DIST_TIMEOUT": "3"}, timeout=60)
    check("a missing rank is a rendezvous error after the timeout", r.returncode == 1 and "rendezvous" in r.stderr
          and time.time() - t0 < 30, f"rc={r.returncode}: {r.stderr.strip()[-300:]}")
    for bad, what in (({"WORLD_SIZE": "two"}, "WORLD_SIZE"), ({"WORLD_SIZE": "2"}, "RANK"),
                      ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK")):
        r = run(base + ["-o", f"{tmp}/x.pt"], bad, timeout=60)
        check(f"malformed environment {bad} is refused", r.returncode == 1 and what in r.stderr,
              r.stderr.strip()[-200:])
    r = run(base + ["-o", f"{tmp}/x.pt", "--nproc", "0"], timeout=60)
    check("--nproc 0 is a usage error", r.returncode == 2, r.stderr.strip()[-200:])

print(f"{len(passed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
