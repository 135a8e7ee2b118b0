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

/** Uploads a Markdown file on the open space page and waits until it is ready to search. */
export async function uploadMarkdownAndWait(page: Page, name: string, text: string): Promise<void> {
  await page.locator("#upload-form input[type=file]").setInputFiles({
    name,
    mimeType: "text/markdown",
    buffer: Buffer.from(text),
  });
  await page.getByRole("button", { name: "Upload" }).click();
  await expect(page.locator("#documents tr", { hasText: name }).locator(".badge")).toHaveText("ready", {
    timeout: 60_000,
  });
}
