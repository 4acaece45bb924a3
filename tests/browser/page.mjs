// Drives the chat page of a running `chatforge serve` in headless chromium: picks "every model", types a prompt,
// sends it, waits until every column is done, and prints what each column shows as JSON.
// Usage: node page.mjs URL PROMPT
import { chromium } from "playwright-core";

const [url, prompt] = process.argv.slice(2);
if (!url || !prompt) { console.error("usage: node page.mjs URL PROMPT"); process.exit(2); }
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector("#model").options.length > 0, null, { timeout: 30000 });
  await page.selectOption("#model", "__all__");
  await page.fill("#prompt", prompt);
  await page.click("#send");
  await page.waitForFunction(() => document.getElementById("status").textContent === "done", null, { timeout: 120000 });
  const answers = await page.$$eval(".answer", divs => divs.map(d => ({
    model: d.dataset.model,
    text: d.querySelector(".text").textContent,
    reward: d.querySelector(".reward").textContent,
    chunks: Number(d.dataset.chunks || 0),
    done: d.classList.contains("done"),
  })));
  console.log(JSON.stringify({ title: await page.title(), answers, errors }));
} finally {
  await browser.close();
}
