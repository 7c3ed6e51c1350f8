#!/usr/bin/env python3
"""bench/serve_bounds — what the worst queries cost `duet serve` (issue #34): the issue's 440 KB
PNG of 20000 x 20000 pixels, one worst-case query under the pixel cap (a 16-bit RGBA PNG of 64
megapixels, 8 bytes a pixel decoded) alone, then N of them at once under the server's defaults:
status and seconds of each answer, /healthz latency meanwhile, and the server's peak RSS (VmHWM).
Prints a table; -o writes JSON.

    bench/serve_bounds.py build/duet --index G.idx [--clients 8] [--timeout 10] [-o bounds.json]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests"))
from serve_util import Server, png_bytes, simultaneous, worst_case_drawing  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("duet")
ap.add_argument("--index", required=True)
ap.add_argument("--clients", type=int, default=8)
ap.add_argument("--timeout", type=int, default=10)
ap.add_argument("-o", "--out")
a = ap.parse_args()

env = dict(os.environ)
rows, res = [], {"clients": a.clients, "timeout_s": a.timeout}
with Server(a.duet, a.index, env, ["--timeout", str(a.timeout), "--workers", str(max(8, a.clients))]) as s:
    base = s.rss_kib() / 1024
    res["idle_rss_mib"] = base
    bomb = png_bytes(20000, 20000, b"\x00" + b"\xff" * 7500, depth=8, colour=0)  # grey, as the issue's
    t0 = time.time()
    st, _, _ = s.request("POST", "/api/search", bomb, {"Content-Type": "image/png"})
    res["bomb"] = {"bytes": len(bomb), "status": st, "s": time.time() - t0, "peak_rss_mib": s.peak_rss_kib() / 1024}
    rows.append((f"20000 x 20000 grey PNG ({len(bomb) // 1024} KB)", st, res["bomb"]["s"], "", res["bomb"]["peak_rss_mib"]))
    worst = worst_case_drawing()
    out, health, peak = simultaneous(s, worst, 1)
    res["one"] = {"bytes": len(worst), "status": out[0][0], "s": out[0][1], "peak_rss_mib": peak}
    rows.append((f"one worst case ({len(worst) // 1024} KB, 64 Mpx 16-bit RGBA)", out[0][0], out[0][1],
                 f"{max(health) * 1e3:.0f}", peak))
    out, health, peak = simultaneous(s, worst, a.clients)
    res["many"] = {"answers": [{"status": o[0], "s": o[1], "error": o[2]} for o in out],
                   "healthz_max_ms": max(health) * 1e3, "healthz_polls": len(health), "peak_rss_mib": peak}
    statuses = {}
    for o in out:
        statuses[o[0]] = statuses.get(o[0], 0) + 1
    rows.append((f"{a.clients} worst cases at once", ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())),
                 max(o[1] for o in out), f"{max(health) * 1e3:.0f}", peak))

print(f"duet serve, idle RSS {base:.0f} MiB, --timeout {a.timeout}")
print(f"| query | status | slowest answer (s) | /healthz max (ms) | peak RSS (MiB) |")
print(f"| --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]} | {r[4]:.0f} |")
if a.out:
    json.dump(res, open(a.out, "w"), indent=2)
