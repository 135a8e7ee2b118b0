// Loads a page in Chromium and reports the JS and WASM it downloads before the page is hydrated:
// each file's size raw and gzip-compressed (level 9, as a server would send it), and the totals.
// Usage: node measure-bundle.cjs http://127.0.0.1:3000/ [--json]
const { chromium } = require("@playwright/test");
const zlib = require("zlib");

(async () => {
  const url = process.argv[2] ?? "http://127.0.0.1:3000/";
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = await browser.newPage();
  const files = [];
  page.on("response", async (r) => {
    const path = new URL(r.url()).pathname;
    if (!/\.(wasm|js)$/.test(path)) return;
    try {
      const body = await r.body();
      files.push({ path, bytes: body.length, gzip: zlib.gzipSync(body, { level: 9 }).length });
    } catch (_) { /* redirects have no body */ }
  });
  await page.goto(url);
  await page.waitForSelector("body[data-hydrated='true']", { timeout: 30000 });
  await page.waitForLoadState("networkidle");
  await browser.close();
  files.sort((a, b) => b.bytes - a.bytes);
  const total = files.reduce((t, f) => ({ bytes: t.bytes + f.bytes, gzip: t.gzip + f.gzip }), { bytes: 0, gzip: 0 });
  if (process.argv.includes("--json")) {
    console.log(JSON.stringify({ url, files, total }, null, 2));
  } else {
    for (const f of files) console.log(`${f.path}\t${f.bytes}\t${f.gzip}`);
    console.log(`total\t${total.bytes}\t${total.gzip}`);
  }
})();
