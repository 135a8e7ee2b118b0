import { expect, test, type Locator } from "@playwright/test";
import { createAndOpenSpace, uploadMarkdownAndWait } from "./helpers";

// Runs against a server whose generator is an OpenAI-compatible provider (mock-provider.py,
// started by scripts/test) that answers in Markdown with raw HTML and a javascript: link mixed in.
const providerURL = process.env.KENNING_E2E_PROVIDER_URL;
test.skip(!providerURL, "KENNING_E2E_PROVIDER_URL is not set: no server with a Markdown-writing provider");
test.use({ baseURL: providerURL });

/** What every rendering of the provider's answer must show, live or from history. */
async function expectRendered(text: Locator) {
  await expect(text.locator("h2")).toHaveText("Release steps");
  await expect(text.locator("ol > li")).toHaveCount(2);
  await expect(text.locator("ol > li").first().locator("code")).toHaveText("cargo build --release");
  await expect(text.locator("pre code")).toContainText("cargo build --release");
  await expect(text.locator("table td").first()).toHaveText("Build");
  // The raw HTML is shown as text, never as elements; the javascript: link is text too.
  await expect(text.locator("img, script, iframe")).toHaveCount(0);
  await expect(text).toContainText('<img src=x onerror="window.__pwned=1">');
  await expect(text).toContainText("click me");
  await expect(text.locator('a[href^="javascript"]')).toHaveCount(0);
}

test("an answer written in Markdown renders as lists, code and tables, never as raw HTML", async ({ page }) => {
  await createAndOpenSpace(page, "Releases");
  await uploadMarkdownAndWait(
    page,
    "release.md",
    "# Release checklist\n\nEvery release is built with cargo build --release before it ships.\n\n" +
      "The release notes list every change since the previous version.\n",
  );
  await page.getByRole("link", { name: "Ask this space" }).click();
  await page.waitForSelector("body[data-hydrated='true']");
  await page.getByPlaceholder(/Ask a question/).fill("How is a release built?");
  await page.getByRole("button", { name: "Ask", exact: true }).click();

  const answer = page.locator(".turn.answer.live").last();
  await expect(answer.locator(".answer-meta")).toContainText("Answered by openai", { timeout: 30_000 });
  const text = answer.locator(".answer-text");
  await expectRendered(text);
  // The supported claim links its passage; the made-up one is marked, inside its list item.
  const cite = text.locator("ol > li").first().locator("a.cite");
  await expect(cite).toHaveText("[1]");
  await expect(cite).toHaveAttribute("href", /\/documents\/.+chunk=/);
  await expect(text.locator("ol > li").nth(1).locator(".unsupported")).toContainText("green cheese");
  await expect(text.locator("ol > li").nth(1).locator("a.cite")).toHaveCount(0);
  expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();

  // The stored answer, rendered by the server on a fresh load, is the same Markdown.
  await expect(page).toHaveURL(/[?&]c=/);
  await page.reload();
  const past = page.locator(".turn.answer").first().locator(".answer-text");
  await expectRendered(past);
  await expect(past.locator("a.cite").first()).toHaveAttribute("href", /\/documents\//);
  await expect(past.locator("ol > li").nth(1).locator(".unsupported")).toContainText("green cheese");
  await expect(past.locator("ol > li").first().locator(".unsupported")).toHaveCount(0);
  await page.waitForSelector("body[data-hydrated='true']");
  expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();

  // A citation in the text opens its passage.
  await past.locator("a.cite").first().click();
  await expect(page.getByRole("heading", { level: 1, name: "release.md" })).toBeVisible();
  await expect(page.locator(".passage.cited")).toContainText("cargo build --release");
});
