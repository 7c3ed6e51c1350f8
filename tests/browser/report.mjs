// The run report (`duet report`) in a real browser (Debian's chromium through playwright-core),
// opened from disk with the network cut off: no console error, every chart drawn (its canvas has
// painted pixels), every thumbnail decoded (natural size > 0), the layout fits a phone. Saves a
// screenshot of each width.
//
//   node report.mjs REPORT.html SCREENSHOT_PREFIX
// Prints one PASS/FAIL line per check and exits 1 if any failed.
import { pathToFileURL } from "node:url";
import { check, exit, launch } from "./harness.mjs";

const [report, shotPrefix] = process.argv.slice(2);
const browser = await launch();
for (const [label, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
  const context = await browser.newContext({ viewport });
  // Self-contained: any request beyond the file itself (a CDN, a font) is refused and reported.
  const requests = [];
  await context.route("**/*", (route) => {
    if (route.request().url().startsWith("file:") || route.request().url().startsWith("data:")) return route.continue();
    requests.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(pathToFileURL(report).href, { waitUntil: "load" });
  await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 30000 });
  const canvases = await page.$$eval("canvas", (cs) => cs.map((c) => {
    const ctx = c.getContext("2d");
    const { data } = ctx.getImageData(0, 0, c.width, c.height);
    let painted = 0;
    for (let i = 3; i < data.length; i += 4 * 7) painted += data[i] > 0 ? 1 : 0;
    return { title: c.closest(".chart")?.querySelector("h4")?.textContent || "?", w: c.width, h: c.height, painted };
  }));
  const blank = canvases.filter((c) => c.w === 0 || c.h === 0 || c.painted < 20);
  const images = await page.$$eval("img", (is) => is.map((i) => ({ w: i.naturalWidth, h: i.naturalHeight, alt: i.alt })));
  const broken = images.filter((i) => !(i.w > 0 && i.h > 0));
  const text = await page.textContent("body");
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  if (label === "desktop") {
    const titles = canvases.map((c) => c.title).join(" | ");
    check("report has the metrics table and the ledger", text.includes("map_all") && text.includes("Compute ledger"));
    check("precision-recall and mAP@K curves", /precision-recall/.test(titles) && /mAP@K/.test(titles), titles);
    check("per-class AP chart and the best and worst classes named", /AP per class/.test(titles) &&
          text.includes("Best classes") && text.includes("Worst"));
    check("t-SNE maps of Phase I and Phase II", /Phase I: sketch/.test(titles) && /Phase I: photo/.test(titles) &&
          /Phase II/.test(titles), titles);
    check("example queries with their top 10 (best, median, worst)", images.length >= 3 * 11 &&
          text.includes("first relevant at rank"), `${images.length} images`);
  }
  check(`${label}: every chart drawn`, canvases.length >= 6 && blank.length === 0,
        `${canvases.length} canvases, blank: ${JSON.stringify(blank)}`);
  check(`${label}: every thumbnail decoded`, images.length > 0 && broken.length === 0, `${broken.length} broken`);
  check(`${label}: no console errors`, errors.length === 0, errors.join(" | "));
  check(`${label}: nothing fetched from the network`, requests.length === 0, requests.join(" "));
  if (label === "phone") check("phone: the page fits the screen width", width <= viewport.width + 1, `scrollWidth ${width}`);
  await page.screenshot({ path: `${shotPrefix}-${label}.png`, fullPage: label === "desktop" });
  await context.close();
}
await browser.close();
exit();
