// Loads a page in Chromium and reports the JS and WASM it downloads before the page is hydrated:
// each file's size raw, gzip-compressed at level 9, and as it came over the wire (the server's
// precompressed copy in the encoding the browser asked for), and the totals.
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
      const wire = (await r.request().sizes()).responseBodySize;
      files.push({ path, bytes: body.length, gzip: zlib.gzipSync(body, { level: 9 }).length, wire,
        encoding: (await r.allHeaders())["content-encoding"] ?? "identity" });
    } catch (_) { /* redirects have no body */ }
  });
  await page.goto(url);
  await page.waitForSelector("body[data-hydrated='true']", { timeout: 30000 });
  await page.waitForLoadState("networkidle");
  await browser.close();
  files.sort((a, b) => b.bytes - a.bytes);
  const total = files.reduce((t, f) => ({ bytes: t.bytes + f.bytes, gzip: t.gzip + f.gzip, wire: t.wire + f.wire }),
    { bytes: 0, gzip: 0, wire: 0 });
  if (process.argv.includes("--json")) {
    console.log(JSON.stringify({ url, files, total }, null, 2));
  } else {
    console.log("path\traw\tgzip-9\twire\tencoding");
    for (const f of files) console.log(`${f.path}\t${f.bytes}\t${f.gzip}\t${f.wire}\t${f.encoding}`);
    console.log(`total\t${total.bytes}\t${total.gzip}\t${total.wire}`);
  }
})();
