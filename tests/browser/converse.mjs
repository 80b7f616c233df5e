// Drives the page in headless Chromium with a fake microphone playing a WAV file (looped):
//   node converse.mjs URL SCREENSHOT_DIR SCENARIO [WAV...]   (Chromium flags in CHROMIUM_ARGS, JSON)
// Scenarios: "talk" (a spoken turn, a typed turn, a dropped socket that resumes, a spoken turn
// again); "talk-over" (a question, then over its reply an "mm" and later a sentence, the three
// WAVs given); "failure" (a turn fails while a stage is down; the line "broken" is printed, and the
// page waits for a line on stdin, sent once the stage is back, then for a turn that completes).
// Prints one JSON line: what the page showed at each step.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [url, shots, scenario, ...spoken] = process.argv.slice(2);
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
// "talk-over": the microphone is a stream the script plays WAV files into, each when the page is in
// the state it is meant for (the page's capture path is the same; only the device is synthetic).
if (scenario === "talk-over") {
  await page.addInitScript(() => {
    const mic = (window.fakeMic = {});
    navigator.mediaDevices.getUserMedia = async () => {
      mic.ctx = new AudioContext({ sampleRate: 48000 });
      mic.dest = mic.ctx.createMediaStreamDestination();
      return mic.dest.stream;
    };
    mic.play = async (b64) => {
      await mic.ctx.resume();
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const source = mic.ctx.createBufferSource();
      source.buffer = await mic.ctx.decodeAudioData(bytes.buffer);
      source.connect(mic.dest);
      await new Promise((done) => { source.onended = done; source.start(); });
    };
  });
}
const say = (file) => page.evaluate((b64) => window.fakeMic.play(b64), readFileSync(file).toString("base64"));
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
    await page.getByLabel("Voice").selectOption("bf_emma"); // chosen before starting: the session's config
    await page.getByLabel("End of turn").selectOption("END_OF_TURN_DETECTOR_SILENCE");
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
    // The socket is open again, then the gateway says the session resumed (its own event, later).
    await page.waitForFunction(() => window.voiceStats.reconnects >= 1
      && window.voiceStats.events.filter((e) => e === "session_started").length >= 2, null, { timeout: 30000 });
    steps.reconnected = await seen();
    await rows(3, 150000);
    steps.after = await seen();
  } else if (scenario === "talk-over") {
    const [question, mm, sentence] = spoken;
    await state("listening");
    await say(question);
    await state("speaking", 120000);
    const saying = say(mm); // over the reply: paused, judged no turn, resumed
    await state("paused");
    await page.screenshot({ path: `${shots}/page-paused.png`, fullPage: true });
    await saying;
    await page.waitForFunction(() => window.voiceStats.events.includes("reply_resumed"), null, { timeout: 30000 });
    steps.resumed = await seen();
    await say(sentence); // over the reply again: a turn, so the reply is interrupted
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
