import { type APIRequestContext, expect, test } from "@playwright/test";
import { createAndOpenSpace } from "./helpers";

/** The main module's path: its name carries the hash of its content. */
const MAIN_WASM = /^\/pkg\/kenning\.[A-Za-z0-9_-]{22}\.wasm$/;

/** The bundle files a server-rendered page names, read from its HTML. */
async function bundleNamedBy(request: APIRequestContext, path: string): Promise<string[]> {
  const html = await (await request.get(path)).text();
  return [...new Set(html.match(/\/pkg\/[^"'\s)]+/g) ?? [])];
}

test("a new user creates a space, uploads a Markdown file, sees it listed and deletes it", async ({ page }) => {
  await page.goto("/");
  await expect(page.getByRole("heading", { name: /Answers from your team/ })).toBeVisible();
  await page.waitForSelector("body[data-hydrated='true']");

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Spaces" }).click();
  await expect(page).toHaveURL(/\/spaces$/);
  const name = `Handbook ${Date.now()}`;
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Description").fill("How the team works");
  await page.getByRole("button", { name: "Create space" }).click();

  await page.getByRole("link", { name: new RegExp(name) }).click();
  await expect(page.getByRole("heading", { level: 1, name })).toBeVisible();
  await expect(page.locator("#no-documents")).toBeVisible();

  await page.locator("#upload-form input[type=file]").setInputFiles({
    name: "onboarding.md",
    mimeType: "text/markdown",
    buffer: Buffer.from("# Onboarding\n\nAsk for a laptop on day one.\n"),
  });
  await page.getByRole("button", { name: "Upload" }).click();
  // The success notice is rendered by the WASM upload handler: without hydration the browser
  // would have navigated to the raw JSON response instead.
  await expect(page.getByRole("status")).toContainText("Uploaded onboarding.md");
  const row = page.locator("#documents tr", { hasText: "onboarding.md" });
  await expect(row).toBeVisible();
  await expect(row).toContainText("text/markdown");
  // Ingestion runs in the background; the page follows its progress without a reload.
  await expect(row.locator(".badge")).toHaveText("ready", { timeout: 30_000 });

  await page.getByRole("button", { name: "Delete onboarding.md" }).click();
  await expect(page.locator("#no-documents")).toBeVisible();
  await expect(page.locator("#documents")).toHaveCount(0);
});

test("a bad upload shows the server's reason", async ({ page }) => {
  await createAndOpenSpace(page, "Binary");
  await page.locator("#upload-form input[type=file]").setInputFiles({
    name: "image.md",
    mimeType: "text/markdown",
    buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00]),
  });
  await page.getByRole("button", { name: "Upload" }).click();
  await expect(page.getByRole("alert")).toContainText("Unsupported file type");
});

test("the home page loads only the main bundle; other pages fetch their code when visited", async ({ page }) => {
  const wasm: string[] = [];
  page.on("request", (r) => {
    if (r.url().endsWith(".wasm")) wasm.push(new URL(r.url()).pathname);
  });
  await page.goto("/status");
  await page.waitForSelector("body[data-hydrated='true']");
  const initial = [...wasm];
  const main = initial.filter((p) => MAIN_WASM.test(p));
  expect(main, `main module among ${initial.join(", ")}`).toHaveLength(1);

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Search" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Search" })).toBeVisible();
  const later = wasm.slice(initial.length);
  expect(later.length, `lazy chunks fetched on navigation: ${later.join(", ")}`).toBeGreaterThan(0);
  expect(later).not.toContain(main[0]);
});

test("the home page's code arrives in at most 250 KB, as sent", async ({ page }) => {
  // Every JS and WASM file the page loads before it is interactive, counted as it came over
  // the wire (the server's precompressed copies in the encoding the browser asked for).
  const sizes: Promise<{ path: string; bytes: number }>[] = [];
  page.on("requestfinished", (r) => {
    const path = new URL(r.url()).pathname;
    if (/\.(wasm|js)$/.test(path)) sizes.push(r.sizes().then((s) => ({ path, bytes: s.responseBodySize })));
  });
  await page.goto("/");
  await page.waitForSelector("body[data-hydrated='true']");
  await page.waitForLoadState("networkidle");
  const files = await Promise.all(sizes);
  const total = files.reduce((t, f) => t + f.bytes, 0);
  expect(files.some((f) => MAIN_WASM.test(f.path)), "the main module was counted").toBe(true);
  const list = files.map((f) => `${f.path} ${f.bytes}`).join("\n");
  expect(total, `home page code, ${files.length} files:\n${list}`).toBeLessThanOrEqual(250_000);
});

test("the health page shows every dependency and refreshes in place", async ({ page }) => {
  await page.goto("/status");
  await expect(page.locator("#overall-status")).toHaveText("healthy");
  await expect(page.getByRole("heading", { name: "metadata_store" })).toBeVisible();
  await page.waitForSelector("body[data-hydrated='true']");
  await page.getByRole("button", { name: "Refresh" }).click();
  await expect(page.locator("#overall-status")).toHaveText("healthy");
});

test("the bundle's file names carry their content hash and browsers keep them for good", async ({ request }) => {
  const files = await bundleNamedBy(request, "/");
  const main = files.filter((f) => MAIN_WASM.test(f));
  expect(main, `bundle files named by the page: ${files.join(", ")}`).toHaveLength(1);
  for (const ext of ["js", "css"]) {
    expect(files.some((f) => new RegExp(`^/pkg/kenning\\.[A-Za-z0-9_-]{22}\\.${ext}$`).test(f)), `kenning.<hash>.${ext}`).toBe(true);
  }
  for (const file of files) {
    const r = await request.get(file);
    expect(r.status(), file).toBe(200);
    expect(r.headers()["cache-control"], file).toBe("public, max-age=31536000, immutable");
  }
  // The page itself changes with every build and with the data, so it is never kept that way.
  const page = await request.get("/");
  expect(page.headers()["cache-control"] ?? "").not.toContain("immutable");
  // Nothing answers to the unhashed names: an old page cannot load a new build's module.
  expect((await request.get("/pkg/kenning.wasm")).status()).toBe(404);
});

test("the bundle is sent from its precompressed brotli and gzip copies", async ({ request }) => {
  const [main] = (await bundleNamedBy(request, "/")).filter((f) => MAIN_WASM.test(f));
  expect(main).toBeTruthy();
  const sizes: Record<string, number> = {};
  for (const encoding of ["br", "gzip", "identity"]) {
    const r = await request.get(main, { headers: { "accept-encoding": encoding } });
    expect(r.status()).toBe(200);
    const headers = r.headers();
    expect(headers["content-encoding"] ?? "identity").toBe(encoding);
    // A file read from disk has its length up front; a body compressed per request is chunked.
    expect(headers["content-length"], `${encoding} has a length`).toBeTruthy();
    sizes[encoding] = Number(headers["content-length"]);
    // The client decodes what it was sent: every encoding carries the same module.
    const body = await r.body();
    expect(body.subarray(0, 4)).toEqual(Buffer.from([0x00, 0x61, 0x73, 0x6d]));
  }
  expect(sizes.br).toBeLessThan(sizes.gzip);
  expect(sizes.gzip).toBeLessThan(sizes.identity / 2);
});
