#!/usr/bin/env python3
"""What bounds `duet serve` puts on a request (issue #34): images over the pixel cap in each format
are refused with 413 from their header at once; a POST without a length gets 411 at once; an empty
drawing gets 400; a request whose work outlasts --timeout gets 503 and stops; and eight
simultaneous worst-case queries (16-bit RGBA PNGs just under the cap) are all answered, within
the timeout, while /healthz keeps answering and the server's peak memory stays under its stated
bound. `duet search` refuses an empty drawing with one error line.

Usage: serve_bounds.py path/to/duet FIXTURE_DIR   (FIXTURE_DIR from serve_fixture.py)
"""
import os
import re
import socket
import sys
import tempfile
import time

import cv2
import numpy as np

from e2e import E2E
from serve_util import Server, png_bytes, simultaneous, worst_case_drawing

PEAK_MIB = 3072  # the bound README states for eight worst-case queries at once

t = E2E(sys.argv[1])
check, run = t.check, t.run
fx = t.fixture(sys.argv[2])
index = fx["index"]
sketch = open(fx["sketches"][0], "rb").read()


def enc(ext, img, params=()):
    return cv2.imencode(ext, img, list(params))[1].tobytes()


def raw(host, port, data, timeout=15):
    """Sends bytes, returns (status, seconds until the status line)."""
    s = socket.create_connection((host, port), timeout=timeout)
    t0 = time.time()
    s.sendall(data)
    try:
        line = s.recv(4096).split(b"\r\n")[0]
    except socket.timeout:
        line = b""
    s.close()
    parts = line.split()
    return (int(parts[1]) if len(parts) > 1 else None), time.time() - t0


def patched(data, at, value, fmt_size, little):
    b = bytearray(data)
    b[at:at + fmt_size] = value.to_bytes(fmt_size, "little" if little else "big")
    return bytes(b)


pic = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
jpg = enc(".jpg", pic)
sof = jpg.find(b"\xff\xc0")
bombs = {
    "JPEG 60000 x 60000": patched(patched(jpg, sof + 5, 60000, 2, False), sof + 7, 60000, 2, False),
    "PNG 100000 x 100000": patched(patched(enc(".png", pic), 16, 100000, 4, False), 20, 100000, 4, False),
    "BMP 30000 x 30000": patched(patched(enc(".bmp", pic), 18, 30000, 4, True), 22, 30000, 4, True),
    "WebP 16383 x 16383": patched(patched(enc(".webp", pic, (cv2.IMWRITE_WEBP_QUALITY, 80)), 26, 16383, 2, True),
                                  28, 16383, 2, True),
    # The case: a real, fully valid 20000 x 20000 white PNG (1-bit grey here: 60 KB).
    "a valid 20000 x 20000 PNG": png_bytes(20000, 20000, b"\x00" + b"\xff" * 2500, depth=1, colour=0),
}

with Server(t.duet, index, t.env) as s:
    for name, body in bombs.items():
        t0 = time.time()
        st, a = s.json("POST", "/api/search", body, {"Content-Type": "image/png"})
        took = time.time() - t0
        check(f"{name}: 413 from its header in {took * 1e3:.0f} ms", st == 413 and "larger than the limit" in
              a.get("error", "") and took < 1, a.get("error", a))
    st, a = s.json("POST", "/api/search", b"P6\n100000 100000\n255\n", {"Content-Type": "image/png"})
    check("a PPM (OpenCV decodes it, duet does not): 400", st == 400 and "not a format duet reads" in a["error"], a)

    code, took = raw(s.host, s.port, b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n")
    check(f"POST without Content-Length: 411 at once ({took * 1e3:.0f} ms)", code == 411 and took < 1, code)
    st, _, _ = s.request("GET", "/healthz")
    check("still serving after the 411", st == 200)

    white = np.full((256, 256, 3), 255, np.uint8)
    st, a = s.json("POST", "/api/search", enc(".png", white), {"Content-Type": "image/png"})
    check("an empty drawing: 400 'the drawing is empty'", st == 400 and "the drawing is empty" in a["error"], a)
    paper = white.copy()
    paper[20:200, 30:220] = 235  # light grey paper and noise are not ink
    st, a = s.json("POST", "/api/search", enc(".jpg", paper), {"Content-Type": "image/jpeg"})
    check("light grey paper without strokes: 400", st == 400 and "the drawing is empty" in a["error"], a)
    stroke = white.copy()
    cv2.line(stroke, (40, 40), (200, 180), (0, 0, 0), 3)
    st, a = s.json("POST", "/api/search", enc(".png", stroke), {"Content-Type": "image/png"})
    check("one stroke: 200", st == 200 and len(a["results"]) == 10, str(a)[:200])
    st, a = s.json("POST", "/api/search?domain=photo", enc(".png", white), {"Content-Type": "image/png"})
    check("a white photo (an image domain, not a drawing): 200", st == 200, str(a)[:200])

    # Eight worst-case queries at once under the defaults (--workers 8, --timeout 10).
    body = worst_case_drawing()
    out, health, peak = simultaneous(s, body, 8)
    ok = [o for o in out if o[0] == 200]
    timed_out = [o for o in out if o[0] == 503 and "timed out" in o[2]]
    check(f"8 worst-case queries at once ({len(body) // 1024} KB each): every one answered 200 or 503 "
          f"(timed out), within the 10 s timeout and a decode", len(ok) + len(timed_out) == 8 and len(ok) >= 1 and
          max(o[1] for o in out) < 10 + 8, out)
    check(f"/healthz answered throughout (max {max(health) * 1e3:.0f} ms over {len(health)} polls)",
          health and max(health) < 1, [round(h, 3) for h in health if h > 0.1])
    check(f"peak RSS {peak:.0f} MiB < {PEAK_MIB} MiB", peak < PEAK_MIB, peak)
    st, a = s.json("POST", "/api/search", sketch, {"Content-Type": "image/png"})
    check("a sketch after them: 200", st == 200 and len(a["results"]) == 10, str(a)[:200])

# The deadline counts from the request's first byte: a body trickled in over 3 s to a server with
# --timeout 2 (each piece within the 2 s read timeout) is decoded, then stopped with 503.
with Server(t.duet, index, t.env, ["--timeout", "2"]) as s:
    c = socket.create_connection((s.host, s.port), timeout=30)
    c.sendall(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
              % len(sketch))
    t0 = time.time()
    for i in range(3):
        c.sendall(sketch[i * len(sketch) // 3:(i + 1) * len(sketch) // 3])
        if i < 2:
            time.sleep(1.5)
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"Content-Length: (\d+)", reply).group(1)):
        part = c.recv(65536)
        if not part:
            break
        reply += part
    c.close()
    check("past --timeout: 503 'timed out', and the work stopped", reply.startswith(b"HTTP/1.1 503") and
          b"timed out" in reply, reply[:300])
    st, a = s.json("POST", "/api/search", sketch, {"Content-Type": "image/png"})
    check("the next query is answered", st == 200, str(a)[:200])

with tempfile.TemporaryDirectory() as tmp:
    blank = os.path.join(tmp, "blank.png")
    open(blank, "wb").write(enc(".png", np.full((100, 100, 3), 255, np.uint8)))
    r = run(["search", "--index", index, blank], expect_rc=1)
    check("duet search of an empty drawing: one error line, exit 1", r.returncode == 1 and
          r.stderr.count("duet: error:") == 1 and "blank.png: the drawing is empty" in r.stderr and not r.stdout,
          r.stderr[-300:])
t.finish()
