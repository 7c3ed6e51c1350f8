// The drawing page in a real browser (Debian's chromium through playwright-core), against a
// running `duet serve`:
//   1. draws strokes on the canvas with pointer events and waits for a grid of thumbnails with
//      scores;
//   2. drops a sketch file on the page and checks the grid's first 5 against `duet search`;
//   3. clicks a result, which searches with that photo;
//   4. at phone width (390 px), the page fits the screen and drawing with touch works;
//   and throughout: no console error, every thumbnail loaded. Saves a screenshot.
//
//   node page.mjs URL SKETCH.png EXPECTED_TOP5.json SCREENSHOT.png
// Prints one PASS/FAIL line per check and exits 1 if any failed.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { check, exit, launch } from "./harness.mjs";

const [url, sketch, expectedFile, screenshot] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const browser = await launch();
const consoleErrors = [];
function watch(page) {
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("requestfailed", (r) => r.failure()?.errorText !== "net::ERR_ABORTED" &&
    consoleErrors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
}

// Waits for a finished search (results shown) and returns the grid's hits once every thumbnail
// has loaded.
async function results(page) {
  await page.waitForFunction(() => document.body.dataset.state === "done", null, { timeout: 60000 });
  await page.waitForFunction(() => [...document.querySelectorAll("#results .hit img")]
    .every((img) => img.complete), null, { timeout: 30000 });
  return page.$$eval("#results .hit", (hits) => hits.map((h) => ({
    path: h.dataset.path, id: Number(h.dataset.id),
    score: h.querySelector(".score").textContent, cls: h.querySelector(".cls").textContent,
    loaded: h.querySelector("img").naturalWidth > 0,
  })));
}

async function draw(page, strokes, touch = false) {
  const box = await page.locator("#canvas").boundingBox();
  for (const stroke of strokes) {
    const pts = stroke.map(([x, y]) => [box.x + x * box.width, box.y + y * box.height]);
    if (touch) {
      // Touch pointer events through the DevTools protocol, as a finger would send them.
      const cdp = await page.context().newCDPSession(page);
      const send = (type, [x, y]) => cdp.send("Input.dispatchTouchEvent",
        { type, touchPoints: type === "touchEnd" ? [] : [{ x, y }] });
      await send("touchStart", pts[0]);
      for (const p of pts.slice(1)) await send("touchMove", p);
      await send("touchEnd", pts[pts.length - 1]);
    } else {
      await page.mouse.move(...pts[0]);
      await page.mouse.down();
      for (const p of pts.slice(1)) await page.mouse.move(...p, { steps: 3 });
      await page.mouse.up();
    }
  }
}

// Two wheels and a frame: something like a bicycle.
const circle = (cx, cy, r) => Array.from({ length: 25 }, (_, i) =>
  [cx + r * Math.cos((i / 24) * 2 * Math.PI), cy + r * Math.sin((i / 24) * 2 * Math.PI)]);
const bicycle = [circle(0.28, 0.62, 0.16), circle(0.72, 0.62, 0.16),
  [[0.28, 0.62], [0.45, 0.38], [0.65, 0.38], [0.72, 0.62]], [[0.45, 0.38], [0.5, 0.62], [0.28, 0.62]]];

try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  watch(page);
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.state === "idle", null, { timeout: 30000 });
  const domains = await page.$$eval("#domain option", (o) => o.map((x) => x.value));
  check("the page loads the index's domains", domains.includes("sketch") && domains.includes("photo"),
    domains.join(","));

  // 1. Draw.
  await draw(page, bicycle);
  let hits = await results(page);
  check("drawing strokes gives a grid of thumbnails with scores", hits.length === 20 &&
    hits.every((h) => /^-?\d+\.\d{3}$/.test(h.score)), `${hits.length} hits, first ${JSON.stringify(hits[0])}`);
  check("every thumbnail of the drawing's results loaded", hits.every((h) => h.loaded));
  check("results carry class names", hits.every((h) => h.cls.length > 0));
  await page.evaluate(() => { document.body.dataset.state = "undoing"; });
  await page.click("#undo");
  hits = await results(page);
  check("undo searches again with the strokes left", hits.length === 20);

  // 2. Drop a held-out sketch: the grid's first 5 are `duet search`'s first 5, in order.
  const bytes = readFileSync(sketch).toString("base64");
  await page.evaluate(() => { document.body.dataset.state = "dropping"; });
  const dt = await page.evaluateHandle(([b64, name]) => {
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const d = new DataTransfer();
    d.items.add(new File([raw], name, { type: "image/png" }));
    return d;
  }, [bytes, basename(sketch)]);
  await page.dispatchEvent("#board", "drop", { dataTransfer: dt });
  hits = await results(page);
  const top5 = hits.slice(0, 5).map((h) => h.path);
  check("a dropped sketch: the grid's top 5 equal duet search's, in order",
    JSON.stringify(top5) === JSON.stringify(expected), `${JSON.stringify(top5)} vs ${JSON.stringify(expected)}`);
  check("the dropped image is shown as the query", await page.isVisible("#preview"));
  check("every thumbnail of the dropped sketch's results loaded", hits.every((h) => h.loaded));
  await page.screenshot({ path: screenshot, fullPage: true });

  // 3. Click a result: it becomes the query.
  const clicked = hits[2];
  await page.evaluate(() => { document.body.dataset.state = "clicking"; });
  await page.click(`#results .hit[data-id="${clicked.id}"]`);
  hits = await results(page);
  const status = await page.textContent("#status");
  check("clicking a result searches with that photo", hits.length > 0 && /\(photo\)/.test(status), status);

  // 4. Phone width, drawing with a finger.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  watch(phone);
  await phone.goto(url);
  await phone.waitForFunction(() => document.body.dataset.state === "idle", null, { timeout: 30000 });
  const fit = await phone.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    canvas: document.getElementById("canvas").getBoundingClientRect().width,
  }));
  check("phone width: nothing wider than the screen, the canvas nearly full width",
    fit.scroll <= 390 && fit.canvas >= 300, JSON.stringify(fit));
  await draw(phone, bicycle, true);
  hits = await results(phone);
  check("phone: drawing with touch gives results", hits.length > 0 && hits.every((h) => h.loaded), `${hits.length}`);
  await phone.screenshot({ path: screenshot.replace(/\.png$/, "-phone.png"), fullPage: true });
} catch (e) {
  check("the page test ran to the end", false, String(e));
} finally {
  check("no console error, no failed request", consoleErrors.length === 0, consoleErrors.join(" | "));
  await browser.close();
}
exit();
