import { expect, test } from "@playwright/test";

// Runs against a second server started with --auth password (scripts/test passes its address).
const authURL = process.env.KENNING_E2E_AUTH_URL;
test.skip(!authURL, "KENNING_E2E_AUTH_URL is not set: no server with sign-in to test against");
test.use({ baseURL: authURL });

test("the first visitor creates the admin, makes and revokes an API key, signs out and in", async ({ page, request }) => {
  const email = "admin@example.org";
  const password = "correct horse battery";

  // A stranger is sent to sign in; with no account yet, the page offers to create the admin.
  await page.goto("/spaces");
  await expect(page).toHaveURL(/\/login\?next=\/spaces$/);
  await expect(page.getByRole("heading", { name: "Create the admin account" })).toBeVisible();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/spaces$/);
  await expect(page.locator("#signed-in-as")).toContainText(email);
  await page.waitForSelector("body[data-hydrated='true']");

  const name = `Private ${Date.now()}`;
  await page.getByLabel("Name").fill(name);
  await page.getByRole("button", { name: "Create space" }).click();
  await expect(page.getByRole("link", { name: new RegExp(name) })).toBeVisible();

  // An API key, shown once, opens the API to a program until it is revoked.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Account" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Account" })).toBeVisible();
  await page.getByLabel("Name").fill("e2e script");
  await page.getByRole("button", { name: "Create key" }).click();
  const key = (await page.locator("#new-key-value").textContent()) ?? "";
  expect(key).toMatch(/^kn_[0-9a-f]{40}$/);
  const row = page.locator("#key-list tr", { hasText: "e2e script" });
  await expect(row).toContainText(key.slice(0, 11));
  await expect(row).not.toContainText(key);

  const asProgram = () =>
    request.get(`${authURL}/api/v1/spaces`, { headers: { Authorization: `Bearer ${key}` } });
  const listed = await asProgram();
  expect(listed.status()).toBe(200);
  expect(JSON.stringify(await listed.json())).toContain(name);
  await row.getByRole("button", { name: "Revoke" }).click();
  await expect(row).toContainText("revoked");
  expect((await asProgram()).status()).toBe(401);

  // Signing out ends the session: pages send the browser back to sign in.
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/spaces");
  await expect(page).toHaveURL(/\/login\?next=/);

  // A wrong password is refused with the reason; the right one goes where the user was headed.
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("Wrong email or password");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/spaces$/);
  await expect(page.getByRole("link", { name: new RegExp(name) })).toBeVisible();
});

test("an admin disables, enables and deletes an account; its owner changes the password and signs out everywhere", async ({ page, browser }) => {
  const password = "correct horse battery";
  const signIn = async (p: typeof page, email: string, secret: string) => {
    await p.goto("/login");
    await p.getByLabel("Email").fill(email);
    await p.getByLabel("Password").fill(secret);
    await p.getByRole("button", { name: "Sign in" }).click();
  };
  await signIn(page, "admin@example.org", password);
  await expect(page).toHaveURL(/\/$/);
  await page.goto("/account");
  await page.waitForSelector("body[data-hydrated='true']");

  const member = `member-${Date.now()}@example.org`;
  const form = page.locator("#create-user");
  await form.getByLabel("Email").fill(member);
  await form.getByLabel("Password", { exact: true }).fill(password);
  await form.getByRole("button", { name: "Create account" }).click();
  const row = page.locator("#user-list tr", { hasText: member });
  await expect(row).toContainText("active");

  const other = await browser.newContext({ baseURL: authURL });
  const theirs = await other.newPage();
  await signIn(theirs, member, password);
  await expect(theirs).toHaveURL(/\/$/);

  // Disabled: their open session ends at once and they cannot sign in again.
  await row.getByRole("button", { name: "Disable" }).click();
  await expect(row).toContainText("disabled");
  await theirs.goto("/spaces");
  await expect(theirs).toHaveURL(/\/login\?next=/);
  await signIn(theirs, member, password);
  await expect(theirs.getByRole("alert")).toContainText("Wrong email or password");

  // Enabled again: they sign in, change their password, and sign out everywhere.
  await row.getByRole("button", { name: "Enable" }).click();
  await expect(row).toContainText("active");
  await signIn(theirs, member, password);
  await expect(theirs).toHaveURL(/\/$/);
  await theirs.goto("/account");
  const change = theirs.locator("#change-password");
  await change.getByLabel("Current password").fill("not it");
  await change.getByLabel("New password").fill("a new long password");
  await change.getByRole("button", { name: "Change password" }).click();
  await expect(theirs.getByRole("alert")).toBeVisible();
  await change.getByLabel("Current password").fill(password);
  await change.getByLabel("New password").fill("a new long password");
  await change.getByRole("button", { name: "Change password" }).click();
  await expect(theirs.locator("#password-changed")).toBeVisible();
  await theirs.getByRole("button", { name: "Sign out everywhere" }).click();
  await expect(theirs).toHaveURL(/\/login$/);
  await signIn(theirs, member, password);
  await expect(theirs.getByRole("alert")).toContainText("Wrong email or password");
  await signIn(theirs, member, "a new long password");
  await expect(theirs).toHaveURL(/\/$/);

  // Deleted, after the admin confirms: gone from the list, and signed out.
  page.once("dialog", (d) => d.accept());
  await row.getByRole("button", { name: "Delete" }).click();
  await expect(row).toHaveCount(0);
  await theirs.goto("/spaces");
  await expect(theirs).toHaveURL(/\/login\?next=/);
  await other.close();
});
