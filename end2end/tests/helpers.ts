import { expect, type Page } from "@playwright/test";

/** Creates a space with a unique name through the UI and opens its page; returns the name. */
export async function createAndOpenSpace(page: Page, prefix: string): Promise<string> {
  await page.goto("/spaces");
  await page.waitForSelector("body[data-hydrated='true']");
  const name = `${prefix} ${Date.now()}`;
  await page.getByLabel("Name").fill(name);
  await page.getByRole("button", { name: "Create space" }).click();
  await page.getByRole("link", { name: new RegExp(name) }).click();
  await expect(page.getByRole("heading", { level: 1, name })).toBeVisible();
  return name;
}
