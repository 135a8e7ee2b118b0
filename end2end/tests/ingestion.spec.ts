import { expect, test } from "@playwright/test";
import { createAndOpenSpace } from "./helpers";

/** A one-page PDF with a text layer and a correct cross-reference table. */
function minimalPdf(text: string): Buffer {
  const content = `BT /F1 18 Tf 72 720 Td (${text}) Tj ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
  ];
  let out = "%PDF-1.4\n";
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const o of offsets) out += `${String(o).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}

test("a PDF and a Markdown file are ingested and their progress reaches ready", async ({ page }) => {
  await createAndOpenSpace(page, "Reports");

  const upload = async (file: { name: string; mimeType: string; buffer: Buffer }) => {
    await page.locator("#upload-form input[type=file]").setInputFiles(file);
    await page.getByRole("button", { name: "Upload" }).click();
    await expect(page.getByRole("status")).toContainText(`Uploaded ${file.name}`);
  };
  await upload({ name: "q3.pdf", mimeType: "application/pdf", buffer: minimalPdf("Quarterly revenue grew nine percent") });
  await upload({
    name: "notes.md",
    mimeType: "text/markdown",
    buffer: Buffer.from("# Notes\n\n## Revenue\n\nThe third quarter closed above plan.\n"),
  });

  for (const file of ["q3.pdf", "notes.md"]) {
    const row = page.locator("#documents tr", { hasText: file });
    await expect(row.locator(".badge")).toHaveText("ready", { timeout: 30_000 });
  }
  await expect(page.locator("#documents tr", { hasText: "q3.pdf" })).toContainText("application/pdf");
});

test("a damaged PDF ends failed with a reason the user can read", async ({ page }) => {
  await createAndOpenSpace(page, "Damaged");
  await page.locator("#upload-form input[type=file]").setInputFiles({
    name: "broken.pdf",
    mimeType: "application/pdf",
    buffer: Buffer.from("%PDF-1.7\nnot really a PDF at all"),
  });
  await page.getByRole("button", { name: "Upload" }).click();
  const row = page.locator("#documents tr", { hasText: "broken.pdf" });
  await expect(row.locator(".badge")).toHaveText("failed", { timeout: 30_000 });
  await expect(row.locator(".error-text")).toContainText("PDF");
});
