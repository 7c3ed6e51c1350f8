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
