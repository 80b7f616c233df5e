// Drives the page in headless Chromium with a fake microphone playing a WAV file:
//   node converse.mjs URL SCREENSHOT.png   (Chromium flags in CHROMIUM_ARGS, JSON)
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: JSON.parse(process.env.CHROMIUM_ARGS),
});
const page = await browser.newPage({ viewport: { width: 760, height: 900 } });
const console_ = [];
page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));
let result;
try {
  await page.goto(url);
  await page.getByRole("button", { name: "Start conversation" }).press("Enter"); // keyboard operable
  await page.waitForSelector("[data-latency-row]", { timeout: 120000 });
  await page.waitForFunction(() => window.voiceStats.audioBytes > 0, null, { timeout: 30000 });
  result = await page.evaluate(() => ({
    stats: window.voiceStats,
    status: document.getElementById("status").textContent,
    problem: document.getElementById("problem").textContent,
    reply: document.getElementById("reply").textContent,
    row: document.querySelector("[data-latency-row]").innerText,
    button: document.getElementById("talk").getAttribute("aria-pressed"),
  }));
} catch (err) {
  result = { failure: String(err) };
} finally {
  await page.screenshot({ path: screenshot, fullPage: true });
  await browser.close();
}
console.log(JSON.stringify({ ...result, console: console_ }));
