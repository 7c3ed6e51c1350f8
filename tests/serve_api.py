#!/usr/bin/env python3
"""`duet serve` over real HTTP on loopback: it ranks exactly as `duet search` (raw body, multipart
and ?like=ID), serves thumbnails and the indexed originals only, reports /healthz and Prometheus
/metrics, answers a list of malformed requests with the right 4xx and a JSON error while it keeps
serving, holds up under 8 concurrent clients for 20 s (every answer correct, resident memory
stable), drops a stalled connection after its timeout, never writes its index, and stops cleanly
on SIGTERM.

Usage: serve_api.py path/to/duet FIXTURE_DIR   (FIXTURE_DIR from serve_fixture.py)
"""
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

from e2e import E2E
from serve_util import Server

t = E2E(sys.argv[1])
check, run = t.check, t.run
fx = t.fixture(sys.argv[2])
index, sketches, gallery = fx["index"], fx["sketches"], fx["gallery"]
LOAD_S = float(os.environ.get("DUET_LOAD_SECONDS", "20"))


def cli_search(files, k="all", domain=None):
    args = ["-q", "search", "--index", index, "-k", k, "--json"] + (["--domain", domain] if domain else []) + files
    r = run(args)
    root = os.path.realpath(gallery) + "/"
    out = []
    for line in r.stdout.strip().split("\n"):
        j = json.loads(line)
        out.append([(h["path"][len(root):] if h["path"].startswith(root) else h["path"], h["score"])
                    for h in j["results"]])
    return out


def ranked(answer):
    return [(h["path"], h["score"]) for h in answer["results"]]


def multipart(fields, boundary="duetboundary7"):
    body = b""
    for name, (filename, data) in fields.items():
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_header(w, h):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def raw_exchange(host, port, head, body=b"", timeout=30):
    """Sends a request by hand (headers, then as much body as the server takes) and returns the
    status line's code: for requests http.client will not send, or a body the server refuses early."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(head)
        try:
            for i in range(0, len(body), 1 << 16):
                s.sendall(body[i:i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            got = s.recv(65536)
            if not got:
                break
            data += got
        m = re.match(rb"HTTP/1\.[01] (\d+)", data)
        return int(m.group(1)) if m else None, data
    except (ConnectionResetError, socket.timeout) as e:
        return None, str(e).encode()
    finally:
        s.close()


def index_state():
    st = os.stat(index)
    return st.st_size, st.st_mtime_ns, hashlib.sha256(open(index, "rb").read()).hexdigest(), \
        sorted(os.listdir(os.path.dirname(index)))


before = index_state()
queries = sketches[::max(1, len(sketches) // 5)][:5]
want = cli_search(queries)
photo_rel = sorted(os.listdir(os.path.join(gallery, fx["classes"][1])))[0]
photo_path = os.path.join(gallery, fx["classes"][1], photo_rel)
want_photo = cli_search([photo_path], domain="photo")[0]

with Server(t.duet, index, t.env, ["--timeout", "2", "--keep-alive", "2"]) as s:
    check("binds 127.0.0.1 by default", s.host == "127.0.0.1")
    listening = [l.split() for l in open("/proc/net/tcp").readlines()[1:]]
    check("the listening socket is on loopback only",
          any(f[1] == f"0100007F:{s.port:04X}" and f[3] == "0A" for f in listening) and
          not any(f[1] == f"00000000:{s.port:04X}" for f in listening))

    st, info = s.json("GET", "/api/info")
    n = info["images"]
    check("/api/info: images, domains and kinds, the canvas's domain, classes, limits", st == 200 and
          info["domains"] == ["photo", "sketch"] and info["query_domains"] == ["sketch"] and
          info["kinds"] == {"photo": "image", "sketch": "drawing"} and info["draw_domain"] == "sketch" and
          info["classes"] == fx["classes"] and info["max_k"] == 1000 and
          n == len(want[0]), json.dumps(info)[:300])

    # Ranked exactly as `duet search`: paths and scores, the whole gallery.
    got = [ranked(s.json("POST", "/api/search?k=1000", open(q, "rb").read(), {"Content-Type": "image/png"})[1])
           for q in queries]
    check("POST image body ranks exactly as duet search (5 sketches, whole gallery, scores equal)", got == want,
          f"{got[0][:3]} vs {want[0][:3]}")
    st, a = s.json("POST", "/api/search?k=5", open(queries[0], "rb").read(), {"Content-Type": "image/png"})
    check("answer: results with id, path, score, class; took_ms; unseen", st == 200 and len(a["results"]) == 5 and
          set(a) >= {"results", "took_ms", "unseen"} and set(a["results"][0]) == {"id", "path", "score", "class"} and
          a["results"][0]["class"] == a["results"][0]["path"].split("/")[0], json.dumps(a)[:300])
    body, ctype = multipart({"query": ("q.png", open(queries[1], "rb").read()), "k": (None, b"1000")})
    st, a = s.json("POST", "/api/search", body, {"Content-Type": ctype})
    check("multipart 'query' file (and k as a field) ranks the same", st == 200 and ranked(a) == want[1])
    row = next(h["id"] for h in s.json("POST", "/api/search?k=1000", open(queries[0], "rb").read(),
                                       {"Content-Type": "image/png"})[1]["results"]
               if h["path"] == f"{fx['classes'][1]}/{photo_rel}")
    st, a = s.json("GET", f"/api/search?like={row}&k=1000")
    check("?like=ID ranks as duet search --domain photo of that file", st == 200 and ranked(a) == want_photo and
          a["domain"] == "photo", f"{ranked(a)[:3]} vs {want_photo[:3]}")
    st, a = s.json("POST", "/api/search?k=1000&domain=photo", open(photo_path, "rb").read(),
                   {"Content-Type": "image/jpeg"})
    check("?domain=photo with the file's bytes ranks the same", st == 200 and ranked(a) == want_photo)

    st, hdr, thumb = s.request("GET", f"/api/image/{row}")
    check("/api/image/ID: the stored JPEG thumbnail", st == 200 and hdr.get("Content-Type") == "image/jpeg" and
          thumb[:2] == b"\xff\xd8" and 0 < len(thumb) < os.path.getsize(photo_path))
    st, hdr, full = s.request("GET", f"/api/image/{row}?full=1")
    check("?full=1: the indexed file's bytes", st == 200 and full == open(photo_path, "rb").read())
    st, h = s.json("GET", "/healthz")
    check("/healthz", st == 200 and h == {"ok": True, "images": n})
    st, hdr, page = s.request("GET", "/")
    st2, hdr2, js = s.request("GET", "/app.js")
    check("/ is the page, /app.js its script, from the binary", st == 200 and b"<canvas" in page and
          hdr["Content-Type"].startswith("text/html") and st2 == 200 and b"/api/search" in js)

    # Malformed requests: each its 4xx and a JSON error, and the server keeps serving.
    png = open(queries[0], "rb").read()
    bad = [
        ("truncated PNG", "POST", "/api/search", png[: len(png) // 3], {"Content-Type": "image/png"}, 400),
        ("PNG claiming 100000x100000", "POST", "/api/search", png_header(100000, 100000),
         {"Content-Type": "image/png"}, 413),
        ("not an image", "POST", "/api/search", b"hello", {"Content-Type": "image/png"}, 400),
        ("empty body", "POST", "/api/search", b"", {"Content-Type": "image/png"}, 400),
        ("wrong content type", "POST", "/api/search", png, {"Content-Type": "text/plain"}, 415),
        ("bad multipart", "POST", "/api/search", b"--xx\r\nbroken", {"Content-Type": "multipart/form-data; boundary=xx"}, 400),
        ("multipart without query", "POST", "/api/search", multipart({"other": ("a.png", png)})[0],
         {"Content-Type": multipart({})[1]}, 400),
        ("k=-1", "POST", "/api/search?k=-1", png, {"Content-Type": "image/png"}, 400),
        ("k=0", "POST", "/api/search?k=0", png, {"Content-Type": "image/png"}, 400),
        ("k above the maximum", "POST", "/api/search?k=1001", png, {"Content-Type": "image/png"}, 400),
        ("k not a number", "POST", "/api/search?k=ten", png, {"Content-Type": "image/png"}, 400),
        ("a domain the model lacks", "POST", "/api/search?domain=art", png, {"Content-Type": "image/png"}, 400),
        ("like past the end", "GET", f"/api/search?like={n}", None, {}, 404),
        ("GET search without like", "GET", "/api/search", None, {}, 405),
        ("id past the end", "GET", f"/api/image/{n}", None, {}, 404),
        ("id too long for a number", "GET", "/api/image/99999999999999999999999", None, {}, 404),
        ("negative id", "GET", "/api/image/-1", None, {}, 404),
        ("path traversal", "GET", "/api/image/../../etc/passwd", None, {}, 404),
        ("encoded traversal", "GET", "/api/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd", None, {}, 404),
        ("traversal in full", "GET", f"/api/image/{row}/../../../etc/passwd?full=1", None, {}, 404),
        ("unknown route", "GET", "/etc/passwd", None, {}, 404),
    ]
    for name, method, path, body, headers, code in bad:
        st, hdr, data = s.request(method, path, body, headers)
        try:
            err = json.loads(data).get("error", "")
        except ValueError:
            err = ""
        alive = s.request("GET", "/healthz")[0] == 200
        check(f"malformed: {name} -> {code} with a JSON error, still serving", st == code and err and alive,
              f"{st} {data[:150]!r}")
    big = 50 << 20
    code, data = raw_exchange(s.host, s.port, f"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                              f"Content-Length: {big}\r\n\r\n".encode(), b"\0" * big)
    check("malformed: 50 MB body -> 413, still serving", code == 413 and s.request("GET", "/healthz")[0] == 200,
          f"{code} {data[:200]!r}")
    code, _ = raw_exchange(s.host, s.port, b"GARBAGE\r\n\r\n")
    check("malformed: not HTTP -> 400, still serving", code == 400 and s.request("GET", "/healthz")[0] == 200, code)

    # A client that sends half a request and stalls is dropped after --timeout (2 s), while
    # others are served.
    stall = socket.create_connection((s.host, s.port), timeout=30)
    stall.sendall(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    t0 = time.time()
    served = s.request("GET", "/healthz")[0] == 200
    try:
        stall.recv(4096)
        stall.recv(4096)
    except (ConnectionResetError, socket.timeout):
        pass
    waited = time.time() - t0
    stall.close()
    check("a stalled request is dropped after the timeout, others served meanwhile", served and 1.5 < waited < 10,
          f"{waited:.1f} s")

    # Load: 8 clients for LOAD_S seconds, every answer checked, memory stable.
    bodies = [open(q, "rb").read() for q in queries]
    top10 = [w[:10] for w in want]
    stop_at, errors, counts = time.time() + LOAD_S, [], [0] * 8
    rss = []

    def client(i):
        import http.client
        c = http.client.HTTPConnection(s.host, s.port, timeout=60)
        j = i
        while time.time() < stop_at:
            j = (j + 1) % len(bodies)
            try:
                c.request("POST", "/api/search?k=10", body=bodies[j], headers={"Content-Type": "image/png"})
                r = c.getresponse()
                a = json.loads(r.read())
                if r.status != 200 or ranked(a) != top10[j]:
                    errors.append(f"client {i}: {r.status} {str(a)[:100]}")
            except Exception as e:  # a dropped keep-alive connection is reopened, and counted
                errors.append(f"client {i}: {e!r}")
                c.close()
                c = http.client.HTTPConnection(s.host, s.port, timeout=60)
            counts[i] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        rss.append(s.rss_kib())
        time.sleep(0.5)
    for th in threads:
        th.join()
    warm = rss[len(rss) // 4:]
    growth = (max(warm) - warm[0]) / 1024 if warm else 0
    check(f"load: 8 clients x {LOAD_S:.0f} s, every answer correct", not errors and min(counts) > 0,
          f"{sum(counts)} answers, {len(errors)} wrong: {errors[:3]}")
    check("load: resident memory stable after warm-up (< 32 MiB growth)", growth < 32,
          f"{warm[0] / 1024 if warm else 0:.0f} MiB -> max {max(warm) / 1024 if warm else 0:.0f} MiB")

    st, hdr, m = s.request("GET", "/metrics")
    text = m.decode()
    searches = sum(int(v) for v in re.findall(r'duet_http_requests_total\{route="/api/search",code="200"\} (\d+)', text))
    check("/metrics: Prometheus text with requests, errors, latency histogram, index size", st == 200 and
          hdr["Content-Type"].startswith("text/plain") and searches >= sum(counts) and
          re.search(r'duet_http_errors_total\{route="/api/search"\} \d+', text) and
          re.search(r'duet_http_request_duration_seconds_bucket\{route="/api/search",le="\+Inf"\} \d+', text) and
          f"duet_index_images {n}" in text, text[:400])
    log = [l for l in s.log if l.startswith("duet serve: 127.0.0.1 ")]
    check("one log line per request on stderr (address, method, path, status, bytes, time)",
          len(log) >= sum(counts) and re.match(r"duet serve: 127\.0\.0\.1 POST /api/search\?k=1000 200 \d+B [\d.]+ms",
                                               next(l for l in log if "POST" in l)), "".join(log[:2]))
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        rc = None
    check("SIGTERM: stops cleanly with exit 0", rc == 0, rc)

check("the index and its folder are untouched", index_state() == before)

# Bad flags and files: one error line, no server.
for name, args, rc, pattern in [
    ("missing index", ["serve", "--index", "/nonexistent.idx"], 1, "nonexistent.idx"),
    ("port out of range", ["serve", "--index", index, "--port", "70000"], 2, "port"),
    ("workers 0", ["serve", "--index", index, "--workers", "0"], 2, "workers"),
    ("not an index", ["serve", "--index", fx["sketches"][0]], 1, "index"),
]:
    r = run(args, expect_rc=None)
    check(f"bad input: {name} -> exit {rc}", r.returncode == rc and pattern in r.stderr, r.stderr[-300:])
with Server(t.duet, index, t.env) as s1:
    r = run(["serve", "--index", index, "--port", str(s1.port)], expect_rc=None)
    check("a port in use: one error line, exit 1", r.returncode == 1 and "cannot listen" in r.stderr and
          r.stderr.count("duet: error:") == 1, r.stderr[-300:])
t.finish()
