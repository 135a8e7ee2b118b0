import { expect, test } from "@playwright/test";
import { createAndOpenSpace, uploadMarkdownAndWait } from "./helpers";

test("a new user asks a question, watches the answer stream, opens a citation and can stop an answer", async ({
  page,
}) => {
  await createAndOpenSpace(page, "Handbook");
  await uploadMarkdownAndWait(
    page,
    "leave.md",
    "# Leave policy\n\nEvery employee receives twenty-five days of paid vacation each year.\n\n" +
      "## Carry over\n\nUp to five unused vacation days carry over into the next year.\n",
  );

  await page.getByRole("link", { name: "Ask this space" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Chat" })).toBeVisible();
  await page.waitForSelector("body[data-hydrated='true']");

  // Count the token events the page receives: the answer arrives in pieces, not all at once.
  const question = page.getByPlaceholder(/Ask a question/);
  await question.fill("How many days of paid vacation does an employee get each year?");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  const answer = page.locator(".turn.answer.live").last();
  await expect(answer.locator(".sources li").first()).toContainText("leave.md");
  await expect(answer.locator(".answer-meta")).toContainText("Answered by", { timeout: 60_000 });
  await expect(answer.locator(".answer-text")).not.toBeEmpty();
  // The conversation is remembered: the address names it and the sidebar lists it.
  await expect(page).toHaveURL(/[?&]c=/);
  await expect(page.locator("#conversations li")).toHaveCount(1);

  // A citation (in the text, or in the numbered sources below it) opens the passage, highlighted.
  await answer.locator(".sources a").first().click();
  await expect(page.getByRole("heading", { level: 1, name: "leave.md" })).toBeVisible();
  const cited = page.locator(".passage.cited");
  await expect(cited).toHaveCount(1);
  await expect(cited).toContainText("twenty-five days");
  await expect(cited).toBeInViewport();

  // Back in the conversation the history is there, rendered by the server.
  await page.goBack();
  await expect(page.locator(".turn.question").first()).toContainText("How many days");

  // Stop: a long answer is cut off at once and the page is ready for the next question.
  await page.waitForSelector("body[data-hydrated='true']");
  await question.fill("Summarise everything the handbook says about vacation, carry over and requests in detail.");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await page.getByRole("button", { name: "Stop" }).click();
  await expect(page.locator(".turn.answer.live").last()).toContainText("Stopped.");
  await expect(page.getByRole("button", { name: "Ask", exact: true })).toBeEnabled();
});
