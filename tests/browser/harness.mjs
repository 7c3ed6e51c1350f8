// What the browser checks share: Debian's chromium (or $CHROMIUM) through playwright-core, one
// PASS/FAIL line per check, and an exit status of 1 when any failed.
import { chromium } from "playwright-core";

let failed = 0;

export function check(name, ok, detail = "") {
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  if (!ok) failed++;
}

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
}

export function exit() {
  process.exit(failed ? 1 : 0);
}
