"""What the end-to-end test scripts share: finding the shared dataset (or skipping), running the
duet binary with it, and counting checks.

    from e2e import E2E
    t = E2E(sys.argv[1])   # exits 0 with a SKIP note when ../shared (or $DUET_SHARED) is missing
    r = t.run([...]); t.check("name", ok, detail)
    t.finish()             # prints the count, exits 1 if anything failed
"""
import json
import os
import subprocess
import sys


class E2E:
    def __init__(self, duet):
        self.duet = duet
        here = os.path.dirname(os.path.abspath(__file__))
        self.shared = os.environ.get("DUET_SHARED") or next(
            (p for p in ("../shared", os.path.join(here, "../../shared")) if os.path.isdir(p)), None)
        self.data = os.path.join(self.shared or "", "data/sketchy-subset")
        if not self.shared or not os.path.isdir(self.data):
            print("SKIP: no shared dataset (set DUET_SHARED)")
            print("0 passed, 0 failed")
            sys.exit(0)
        self.env = {**os.environ, "DUET_SHARED": os.path.abspath(self.shared)}
        self.passed, self.failed = [], []

    def check(self, name, ok, detail=""):
        print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail else ""))
        (self.passed if ok else self.failed).append(name)

    def run(self, args, expect_rc=0):
        r = subprocess.run([self.duet] + args, capture_output=True, text=True, env=self.env)
        if expect_rc is not None and r.returncode != expect_rc:
            print(r.stderr[-3000:])
        return r

    def link_test_gallery(self, rows, classes, dest):
        """The test photos of `classes` (rows of a split file: domain, path, class, split) as a
        user's folder of links under dest, one folder per class; returns the test sketches of
        those classes (absolute paths), the queries for that gallery."""
        data, sketches = os.path.abspath(self.data), []
        for dom, path, cls, split in rows:
            if split != "test" or cls not in classes:
                continue
            if dom == "photo":
                dst = os.path.join(dest, path[len("photo/"):])
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(os.path.join(data, path), dst)
            else:
                sketches.append(os.path.join(data, path))
        return sketches

    def fixture(self, fixture_dir):
        """The server fixture serve_fixture.py wrote (index, gallery, sketches, model), or a SKIP
        when it did not run."""
        path = os.path.join(fixture_dir, "fixture.json")
        if not os.path.exists(path):
            print("SKIP: no server fixture (serve_fixture.py did not run)")
            self.finish()
        return json.load(open(path))

    def browser(self, script, args, timeout):
        """Runs tests/browser/SCRIPT (playwright-core driving Debian's chromium) with args; a
        failed check when either is missing (scripts/deps.sh installs both). Returns the
        CompletedProcess, or None when it could not run."""
        here = os.path.dirname(os.path.abspath(__file__))
        modules = os.path.join(here, "browser", "node_modules", "playwright-core")
        if not os.path.isdir(modules) or not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
            self.check("playwright-core and chromium installed (scripts/deps.sh)", False, modules)
            return None
        p = subprocess.run(["node", os.path.join(here, "browser", script)] + args, capture_output=True, text=True,
                           timeout=timeout)
        print(p.stdout + p.stderr[-3000:])
        return p

    def finish(self):
        print(f"{len(self.passed)} passed, {len(self.failed)} failed")
        sys.exit(1 if self.failed else 0)
