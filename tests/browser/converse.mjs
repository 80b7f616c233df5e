// Drives the page in headless Chromium with a fake microphone playing a WAV file (looped):
//   node converse.mjs URL SCREENSHOT_DIR SCENARIO   (Chromium flags in CHROMIUM_ARGS, JSON)
// Scenarios: "talk" (a spoken turn, a typed turn, a dropped socket that resumes, a spoken turn
// again); "talk-over" (an "mm-hmm" and then a sentence over the reply); "failure" (a turn fails while a stage is down; the line "broken" is printed, and the
// page waits for a line on stdin, sent once the stage is back, then for a turn that completes).
// Prints one JSON line: what the page showed at each step.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [url, shots, scenario] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: JSON.parse(process.env.CHROMIUM_ARGS),
});
const page = await browser.newPage({ viewport: { width: 760, height: 1000 } });
const console_ = [];
const failedRequests = [];
page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));
page.on("response", (r) => r.status() >= 400 && failedRequests.push(`${r.status()} ${r.url()}`));
const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once("line", resolve));

const seen = () => page.evaluate(() => ({
  stats: window.voiceStats,
  status: document.getElementById("status").dataset.state,
  problem: document.getElementById("problem").textContent,
  rows: [...document.querySelectorAll("[data-latency-row]")].reverse().map((r) => ({
    outcome: r.dataset.outcome, text: r.innerText })),
  transcript: [...document.querySelectorAll("#transcript li")].map((li) => ({
    outcome: li.dataset.outcome || "", user: li.querySelector(".user .words").textContent,
    reply: li.querySelector(".reply .words").textContent })),
  button: document.getElementById("talk").getAttribute("aria-pressed"),
  voices: document.getElementById("voice").options.length,
}));
const rows = (n, timeout = 120000) => page.waitForFunction((k) => document.querySelectorAll("[data-latency-row]").length >= k,
  n, { timeout });
const state = (s, timeout = 60000) => page.waitForFunction((k) => document.getElementById("status").dataset.state === k,
  s, { timeout });

const steps = {};
let result = {};
try {
  await page.goto(url);
  if (scenario === "talk") { // the TTS's voices are offered (with the TTS down, the default only)
    await page.waitForFunction(() => document.getElementById("voice").options.length > 1, null, { timeout: 30000 });
  }
  await page.getByRole("button", { name: "Start conversation" }).press("Enter"); // keyboard operable
  if (scenario === "talk") {
    await state("speaking", 120000);
    await page.screenshot({ path: `${shots}/page-speaking.png`, fullPage: true });
    await rows(1);
    steps.spoken = await seen();
    await page.getByLabel("Or type").fill("What is a good book for a train ride?");
    await page.getByLabel("Or type").press("Enter");
    await rows(2);
    steps.typed = await seen();
    await page.evaluate(() => window.voiceDebug.drop());
    await page.waitForFunction(() => window.voiceStats.reconnects >= 1, null, { timeout: 30000 });
    steps.reconnected = await seen();
    await rows(3, 150000);
    steps.after = await seen();
  } else if (scenario === "talk-over") {
    await state("paused", 120000);
    await page.screenshot({ path: `${shots}/page-paused.png`, fullPage: true });
    await rows(2, 150000);
    steps.done = await seen();
  } else {
    await rows(1);
    await state("listening");
    steps.failed = await seen();
    await page.screenshot({ path: `${shots}/page-failed.png`, fullPage: true });
    console.log("broken");
    await nextLine(); // the stage is back
    await page.waitForFunction(() => document.querySelector("[data-latency-row]")?.dataset.outcome === "completed",
      null, { timeout: 150000 });
    steps.recovered = await seen();
  }
  result = { steps };
} catch (err) {
  result = { failure: String(err), steps, last: await seen().catch(() => null) };
} finally {
  await page.screenshot({ path: `${shots}/page-${scenario}.png`, fullPage: true });
  await browser.close();
  stdin.close();
}
console.log(JSON.stringify({ ...result, console: console_, failedRequests }));
