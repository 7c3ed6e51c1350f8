#!/usr/bin/env python3
"""The run report in headless chromium (tests/browser/report.mjs, playwright-core): the report
`duet run --quick` wrote for the server fixture's run, and `duet report` writing it again
(the same data). Screenshots land in SHOT_DIR (next to the ctest log).

Usage: report_page.py path/to/duet FIXTURE_DIR SHOT_DIR
"""
import json
import os
import sys

from e2e import E2E

t = E2E(sys.argv[1])
fx = t.fixture(sys.argv[2])
run_dir = os.path.dirname(os.path.dirname(fx["model"]))  # <run>/category/model
shots = os.path.abspath(sys.argv[3])
os.makedirs(shots, exist_ok=True)

first = os.path.join(run_dir, "report.html")
t.check("duet run wrote report.html", os.path.isfile(first))
again = os.path.join(shots, "report.html")
r = t.run(["-q", "report", "--run", run_dir, "-o", again])
t.check("duet report writes the page", r.returncode == 0 and os.path.isfile(again), r.stderr[-300:])
def page_data(path):
    """The DATA object inlined in a report, with the t-SNE coordinates set aside: those depend on
    float rounding in FAISS/BLAS, which may differ between a process that trained and one that did
    not (tests/tsne_test.cpp checks one seed gives one map within a process)."""
    text = open(path).read()
    start = text.index("const DATA = ") + len("const DATA = ")
    data = json.loads(text[start:text.index(";</script>", start)].replace("\\u003c", "<"))
    for s in data["splits"]:
        for m in s.get("maps", []):
            m.pop("x", None), m.pop("y", None)
    return data


if os.path.isfile(first) and os.path.isfile(again):
    a, b = page_data(first), page_data(again)
    t.check("duet report gives the run's own page (metrics, curves, examples, thumbnails, map points)",
            a == b and len(a["splits"][0]["maps"]) == 4, f"{len(a['splits'][0].get('maps', []))} maps")
    p = t.browser("report.mjs", [again, os.path.join(shots, "report")], timeout=300)
    t.check("report in chromium", p is not None and p.returncode == 0)
r = t.run(["report", "--run", os.path.dirname(os.path.abspath(__file__))], expect_rc=1)
t.check("report of a folder that is no run", r.returncode == 1 and "metrics.json" in r.stderr, r.stderr.strip())
t.finish()
