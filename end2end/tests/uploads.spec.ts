import { expect, test } from "@playwright/test";
import { createAndOpenSpace } from "./helpers";

test("three files dropped onto the space page all end ready, with each file's state and a summary", async ({ page }) => {
  await createAndOpenSpace(page, "Dropped");
  await page.waitForSelector("body[data-hydrated='true']");
  const files = [
    { name: "alpha.md", text: "# Alpha\n\nThe alpha team ships on Mondays.\n" },
    { name: "beta.txt", text: "The beta team ships on Tuesdays." },
    { name: "gamma.md", text: "# Gamma\n\nThe gamma team ships on Fridays.\n" },
  ];
  const dataTransfer = await page.evaluateHandle((list) => {
    const dt = new DataTransfer();
    for (const f of list) dt.items.add(new File([f.text], f.name, { type: "text/plain" }));
    return dt;
  }, files);
  const zone = page.locator("#upload-panel");
  await zone.dispatchEvent("dragover", { dataTransfer });
  await zone.dispatchEvent("drop", { dataTransfer });

  await expect(page.getByRole("status")).toContainText("Uploaded 3 of 3 files.");
  for (const f of files) {
    await expect(page.locator("#upload-list li", { hasText: f.name })).toContainText("uploaded");
    await expect(page.locator("#documents tr", { hasText: f.name }).locator(".badge")).toHaveText("ready", {
      timeout: 60_000,
    });
  }
});

test("several files picked at once upload together, and a changed file replaces its earlier version", async ({ page }) => {
  await createAndOpenSpace(page, "Picked");
  await page.waitForSelector("body[data-hydrated='true']");
  await page.locator("#upload-form input[name=file]").setInputFiles([
    { name: "one.md", mimeType: "text/markdown", buffer: Buffer.from("# One\n\nThe first note.\n") },
    { name: "two.md", mimeType: "text/markdown", buffer: Buffer.from("# Two\n\nThe second note.\n") },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  await expect(page.getByRole("status")).toContainText("Uploaded 2 of 2 files.");
  await expect(page.locator("#documents tr", { hasText: "one.md" }).locator(".badge")).toHaveText("ready", { timeout: 60_000 });

  await page.locator("#upload-form input[name=file]").setInputFiles({
    name: "one.md",
    mimeType: "text/markdown",
    buffer: Buffer.from("# One\n\nThe first note, rewritten.\n"),
  });
  await page.getByRole("button", { name: "Upload" }).click();
  await expect(page.getByRole("status")).toContainText("Uploaded one.md.");
  const row = page.locator("#documents tr", { hasText: "one.md" });
  await expect(row).toHaveCount(1, { timeout: 60_000 });
  await expect(row.locator(".badge.version")).toHaveText("v2");
  await expect(row.locator(".badge").last()).toHaveText("ready");
  await expect(page.locator("#documents tbody tr")).toHaveCount(2);
});

test("a source added on the space page syncs on demand and reports what it did", async ({ page }) => {
  await createAndOpenSpace(page, "Sourced");
  await page.waitForSelector("body[data-hydrated='true']");
  const form = page.locator("#source-form");
  // This server may not fetch from its own machine: the sync runs and reports the refusal.
  await form.locator("select[name=kind]").selectOption("url");
  await form.getByLabel("URL or folder path").fill("http://127.0.0.1:9/handbook.html");
  await form.getByRole("button", { name: "Add source" }).click();
  const source = page.locator("#sources li.source", { hasText: "127.0.0.1:9/handbook.html" });
  await expect(source).toContainText("not synced yet");
  await source.getByRole("button", { name: "Sync now" }).click();
  await expect(source).toContainText("1 failed", { timeout: 30_000 });

  // Folder sources need roots an admin configured; this server has none.
  await form.locator("select[name=kind]").selectOption("folder");
  await form.getByLabel("URL or folder path").fill("/tmp");
  await form.getByRole("button", { name: "Add source" }).click();
  await expect(page.locator("#sources").getByRole("alert")).toContainText("--source-roots");
});
