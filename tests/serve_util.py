"""A `duet serve` process for the server tests: started on a free port, its stderr collected.

    with Server(duet, index, env) as s:
        status, headers, body = s.request("POST", "/api/search?k=5", png, {"Content-Type": "image/png"})
"""
import http.client
import json
import re
import subprocess
import threading
import time


class Server:
    def __init__(self, duet, index, env, extra=()):
        # index None: a front over shard servers, named in extra (--shards URL,URL).
        self.args = [duet, "serve"] + (["--index", index] if index else []) + ["--port", "0"] + list(extra)
        self.env = env
        self.log = []

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, text=True, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("duet serve exited: " + "".join(self.log)[-2000:])
            self.log.append(line)
            m = re.search(r"listening on http://([0-9.]+):(\d+)/", line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
        else:
            raise RuntimeError("duet serve did not start")
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None):
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def peak_rss_kib(self):
        """The server process's peak resident memory so far (VmHWM)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0


def png_bytes(w, h, row, depth=8, colour=6):
    """A PNG of w x h pixels whose every row is `row` (filter byte included), compressed a row at
    a time: a valid image of any size in little memory. colour 6: RGBA, 0: grey."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    z = zlib.compressobj(1)
    data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)) +
            chunk(b"IDAT", data) + chunk(b"IEND", b""))


def worst_case_drawing(max_pixels=64 << 20):
    """The query that costs the server the most memory: a 16-bit RGBA PNG just under the pixel cap
    (8 bytes a pixel decoded), a drawing with a dark stripe down its middle (so it has ink and is
    framed). About 2.3 MB on the wire."""
    w = 8192
    h = max_pixels // w - 1
    px = bytearray(b"\xff\xff" * 4 * w)
    for x in range(w // 2 - 8, w // 2 + 8):
        px[8 * x:8 * x + 6] = b"\x00" * 6  # black, opaque
    return png_bytes(w, h, b"\x00" + bytes(px), depth=16, colour=6)


def simultaneous(server, body, n, watch_s=0.2):
    """n clients POST `body` as a sketch at once while /healthz is polled every watch_s seconds.
    Returns ([(status, seconds, error) per client], [healthz seconds], peak RSS in MiB)."""
    import http.client
    import json as _json
    out = [None] * n
    health = []
    go = threading.Event()

    def client(i):
        c = http.client.HTTPConnection(server.host, server.port, timeout=120)
        go.wait()
        t0 = time.time()
        try:
            c.request("POST", "/api/search?k=5", body=body, headers={"Content-Type": "image/png"})
            r = c.getresponse()
            data = r.read()
            err = _json.loads(data).get("error", "") if r.status != 200 else ""
            out[i] = (r.status, time.time() - t0, err)
        except Exception as e:
            out[i] = (None, time.time() - t0, repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    go.set()
    while any(th.is_alive() for th in threads):
        t0 = time.time()
        try:
            ok = server.request("GET", "/healthz", timeout=30)[0] == 200
        except Exception:
            ok = False
        health.append(time.time() - t0 if ok else float("inf"))
        time.sleep(watch_s)
    for th in threads:
        th.join()
    return out, health, server.peak_rss_kib() / 1024
