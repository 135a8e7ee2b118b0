import { expect, test } from "@playwright/test";

test("the metrics dashboard draws charts and updates live without reloading", async ({ page }) => {
  await page.goto("/metrics/dashboard");
  await page.waitForSelector("body[data-hydrated='true']");
  await expect(page.getByRole("heading", { level: 1, name: "Metrics" })).toBeVisible();
  await expect(page.locator("#charts figure")).toHaveCount(8);
  await expect(page.locator("#charts figure").filter({ hasText: "Database p95" })).toHaveCount(1);
  await expect(page.locator("#charts svg path.line").first()).toBeVisible();

  // Traffic from elsewhere shows up in the per-route table within a refresh or two.
  const row = page
    .locator("#routes tbody tr")
    .filter({ has: page.locator("td:nth-child(1)", { hasText: /^GET$/ }) })
    .filter({ has: page.locator("td:nth-child(2)", { hasText: /^\/api\/v1\/spaces\/\{id\}$/ }) });
  const before = (await row.count()) ? Number(await row.locator("td").nth(2).innerText()) : 0;
  const marker = await page.evaluate(() => {
    (window as unknown as { __marker: number }).__marker = 42;
    return 42;
  });
  for (let i = 0; i < 5; i++) {
    await page.request.get("/api/v1/spaces/00000000-0000-7000-8000-000000000000");
  }
  await expect
    .poll(async () => ((await row.count()) ? Number(await row.locator("td").nth(2).innerText()) : 0), {
      timeout: 10_000,
    })
    .toBeGreaterThanOrEqual(before + 5);

  // A route nothing else in the suite calls: its latency percentiles appear where there were none.
  const jobs = page
    .locator("#routes tbody tr")
    .filter({ has: page.locator("td:nth-child(2)", { hasText: /^\/api\/v1\/spaces\/\{id\}\/jobs\/\{job_id\}$/ }) });
  await expect(jobs).toHaveCount(0);
  // Enough calls to rank among the busiest routes the table shows.
  for (let i = 0; i < 40; i++) {
    await page.request.get(
      "/api/v1/spaces/00000000-0000-7000-8000-000000000000/jobs/00000000-0000-7000-8000-000000000001",
    );
  }
  await expect(jobs).toHaveCount(1, { timeout: 10_000 });
  for (const column of [5, 6, 7]) {
    // p50, p95, p99 in milliseconds
    await expect(jobs.locator(`td:nth-child(${column})`)).toHaveText(/^\d+(\.\d+)?$/);
  }

  // Same page, not a reload.
  expect(await page.evaluate(() => (window as unknown as { __marker: number }).__marker)).toBe(marker);
});
