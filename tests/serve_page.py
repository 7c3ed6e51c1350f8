#!/usr/bin/env python3
"""The drawing page in headless chromium (tests/browser/page.mjs, playwright-core) against a real
`duet serve` of the fixture's index; the expected top 5 of the dropped sketch come from
`duet search` of the same file. Screenshots land in SHOT_DIR (next to the ctest log).

Usage: serve_page.py path/to/duet FIXTURE_DIR SHOT_DIR
"""
import json
import os
import sys
import tempfile

from e2e import E2E
from serve_util import Server

t = E2E(sys.argv[1])
fx = t.fixture(sys.argv[2])
shots = os.path.abspath(sys.argv[3])
os.makedirs(shots, exist_ok=True)

# A held-out test sketch whose class's photos are in the index.
sketch = fx["sketches"][len(fx["sketches"]) // 2]
r = t.run(["-q", "search", "--index", fx["index"], "-k", "5", "--json", sketch])
root = os.path.realpath(fx["gallery"]) + "/"
top5 = [h["path"][len(root):] for h in json.loads(r.stdout)["results"]]
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(top5, f)
with Server(t.duet, fx["index"], t.env) as s:
    p = t.browser("page.mjs", [s.url + "/", sketch, f.name, os.path.join(shots, "serve_page.png")], timeout=600)
    t.check("the page test in chromium passes", p is not None and p.returncode == 0)
    errors = [l for l in s.log if " 500 " in l or "internal error" in l]
    t.check("the server answered no request with a 5xx", not errors, "".join(errors[:3]))
os.unlink(f.name)
t.check("screenshots saved", all(os.path.exists(os.path.join(shots, n)) and os.path.getsize(os.path.join(shots, n))
                                 for n in ("serve_page.png", "serve_page-phone.png")), shots)
t.finish()
