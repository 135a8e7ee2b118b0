import { expect, test } from "@playwright/test";
import { createAndOpenSpace } from "./helpers";

test("after ingestion, a search finds the right passage first in every mode", async ({ page }) => {
  const name = await createAndOpenSpace(page, "Policies");
  const files = [
    { name: "leave.md", text: "# Leave\n\nEvery employee receives twenty-five days of paid vacation each year.\n" },
    { name: "deploys.md", text: "# Deployments\n\nProduction deploys happen on Tuesdays after the release checklist.\n" },
  ];
  for (const f of files) {
    await page.locator("#upload-form input[type=file]").setInputFiles({
      name: f.name,
      mimeType: "text/markdown",
      buffer: Buffer.from(f.text),
    });
    await page.getByRole("button", { name: "Upload" }).click();
    await expect(page.getByRole("status")).toContainText(`Uploaded ${f.name}`);
  }
  for (const f of files) {
    await expect(page.locator("#documents tr", { hasText: f.name }).locator(".badge")).toHaveText("ready", {
      timeout: 60_000,
    });
  }

  await page.getByRole("link", { name: "Search this space" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Search" })).toBeVisible();
  await expect(page.locator("select[name=space] option:checked")).toHaveText(name);
  for (const [mode, query, expected] of [
    ["Semantic", "how much holiday time off do staff get", "leave.md"],
    ["Keyword", "Tuesdays", "deploys.md"],
    ["Hybrid", "when are production deploys", "deploys.md"],
  ]) {
    await page.getByLabel("Query").fill(query);
    await page.getByLabel("Mode").selectOption({ label: mode });
    await page.getByRole("button", { name: "Search", exact: true }).click();
    const first = page.locator("#search-results li").first();
    await expect(first).toContainText(expected);
    await expect(page.locator("#search-summary")).toContainText("result");
  }
  await expect(page.locator("#search-results mark").first()).toBeVisible();
});
