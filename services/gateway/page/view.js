// What the page shows of the conversation: both sides of each turn, and each turn's outcome and
// stage timings (a waterfall row, and a bar in the chart of the last turns).
const STAGES = [
  ["endpoint", "end of speech wait", (m) => [0, m.endpoint_ms]],
  ["voxtral", "Voxtral first token", (m) => [m.endpoint_ms, m.voxtral_ttft_ms]],
  ["tts", "TTS first audio", (m) => [m.endpoint_ms + m.first_clause_ms, m.tts_ttfb_ms]],
  ["e2e", "end of speech to first audio", (m) => [m.endpoint_ms, m.e2e_ms]],
];
const OUTCOMES = { TURN_OUTCOME_COMPLETED: "completed", TURN_OUTCOME_INTERRUPTED: "interrupted",
  TURN_OUTCOME_FAILED: "failed" };
const REASONS = { user_speech: "you spoke over it", client_interrupt: "stopped", new_turn: "a new turn came",
  connection_lost: "the connection dropped" };
const CHART_TURNS = 20;

export function outcomeOf(event) {
  return OUTCOMES[event.outcome] || event.outcome;
}

export function plainError(event) {
  const stage = (event.message.match(/^(vad|voxtral|tts) failed/) || [])[1];
  const names = { vad: "speech detection", voxtral: "the language model", tts: "the voice" };
  if (stage && event.code === "ERROR_CODE_UNAVAILABLE") {
    return `Part of the system is down (${names[stage]}). Say it again in a moment: it is tried anew each turn.`;
  }
  if (event.code === "ERROR_CODE_DEADLINE_EXCEEDED") return "That answer took too long and was dropped. Please say it again.";
  if (event.code === "ERROR_CODE_RESOURCE_EXHAUSTED") return "The system is busy right now. Please try again in a moment.";
  return event.message;
}

function describe(outcome, reason) {
  if (outcome === "completed") return "Completed";
  if (outcome === "interrupted") return `Interrupted: ${REASONS[reason] || reason}`;
  const stage = (reason.match(/^(vad|voxtral|tts) failed/) || [])[1];
  return `Failed${stage ? ` in ${stage === "tts" ? "the TTS" : stage === "vad" ? "the VAD" : "Voxtral"}` : ""}`;
}

export class Transcript {
  constructor(list) {
    this.list = list;
    this.items = new Map(); // turn id -> {item, user, reply}
  }

  turn(id, typed) {
    if (this.items.has(id)) return this.items.get(id);
    const item = document.createElement("li");
    item.dataset.turn = id;
    item.innerHTML = '<p class="user"><span class="who">You</span> <span class="words"></span></p>' +
      '<p class="reply"><span class="who">Voxtral</span> <span class="words"></span></p>';
    const entry = { item, user: item.querySelector(".user .words"), reply: item.querySelector(".reply .words") };
    entry.user.textContent = typed ?? "…";
    if (typed === undefined) entry.user.classList.add("pending");
    this.list.append(item);
    this.items.set(id, entry);
    return entry;
  }

  tool(id, name, args, output) {
    const entry = this.turn(id);
    const line = document.createElement("p");
    line.className = "tool";
    line.textContent = `${name}(${args === "{}" ? "" : args}) → ${output}`;
    entry.reply.parentElement.before(line);
  }

  replyPiece(id, text) {
    const entry = this.turn(id);
    entry.reply.textContent = `${entry.reply.textContent} ${text}`.trim();
  }

  drop(id) {
    this.items.get(id)?.item.remove();
    this.items.delete(id);
  }

  ended(event) {
    const entry = this.turn(event.turn_id);
    const outcome = outcomeOf(event);
    entry.item.dataset.outcome = outcome;
    entry.user.classList.remove("pending");
    entry.user.textContent = event.user_text_known ? event.user_text : "(your words could not be transcribed)";
    entry.reply.textContent = event.heard_text;
    if (event.cut_off || outcome !== "completed") {
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = event.heard_text ? ` — ${describe(outcome, event.reason).toLowerCase()}` : describe(outcome, event.reason);
      entry.reply.append(mark);
    }
    this.items.delete(event.turn_id);
  }
}

export class Waterfall {
  constructor(rows, chart) {
    this.rows = rows;
    this.chart = chart;
    this.recent = []; // [outcome, ms] of the last turns, for the chart
  }

  add(n, event) {
    const outcome = outcomeOf(event);
    const m = event.metrics || {};
    const row = document.createElement("tr");
    row.dataset.latencyRow = String(n);
    row.dataset.outcome = outcome;
    const heard = (m.e2e_ms || 0) > 0;
    const span = Math.max(1, ...STAGES.map(([, , at]) => at(m).reduce((a, b) => a + (b || 0), 0)));
    const bars = heard ? STAGES.map(([css, label, at]) => {
      const [from, ms] = at(m).map((v) => v || 0);
      return `<div class="bar"><div class="track"><span class="fill ${css}" style="margin-left:` +
        `${(from / span) * 100}%;width:${(ms / span) * 100}%"></span></div><span>${label}: ${Math.round(ms)} ms</span></div>`;
    }).join("") : '<p class="none">No reply audio went out.</p>';
    row.innerHTML = `<th scope="row">${n}</th><td><p class="outcome ${outcome}"></p><div class="bars">${bars}</div></td>`;
    row.querySelector(".outcome").textContent = describe(outcome, event.reason || "");
    this.rows.prepend(row);
    this.recent = [...this.recent, [outcome, heard ? m.endpoint_ms + m.e2e_ms : 0]].slice(-CHART_TURNS);
    this.draw();
  }

  draw() {
    const most = Math.max(1, ...this.recent.map(([, ms]) => ms));
    const width = 400 / CHART_TURNS;
    this.chart.innerHTML = this.recent.map(([outcome, ms], i) => {
      const h = ms ? Math.max(2, (ms / most) * 72) : 4;
      return `<rect class="${outcome}" x="${i * width + 2}" y="${78 - h}" width="${width - 4}" height="${h}">` +
        `<title>${outcome}${ms ? `: ${Math.round(ms)} ms from the end of speech to the first audio` : ""}</title></rect>`;
    }).join("");
  }
}
