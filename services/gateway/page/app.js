// One-click speech-to-speech: microphone -> PCM16 16 kHz over a WebSocket -> reply audio played back.
// The status is one state, derived from the session's events after each one (see `derive`).
import { Transcript, Waterfall, outcomeOf, plainError } from "./view.js";

const INPUT_RATE = 16000;
const OUTPUT_RATE = 24000;
const FRAME = INPUT_RATE / 50; // 20 ms per message
const RECONNECT_MS = [250, 500, 1000, 2000, 4000, 8000];
// The tools this page offers the model (as clients/demo_tools.py declares them), run here when called.
const NO_PARAMETERS = JSON.stringify({ type: "object", properties: {} });
const TOOLS = {
  get_time: {
    declared: { name: "get_time", description: "The current local time", parameters_json: NO_PARAMETERS },
    run: () => { const now = new Date(); return `${now.getHours() % 12 || 12}:${String(now.getMinutes()).padStart(2, "0")}`; },
  },
  roll_dice: {
    declared: { name: "roll_dice", description: "Roll a die and say what came up", parameters_json: NO_PARAMETERS },
    run: () => String(1 + Math.floor(Math.random() * 6)),
  },
};
const LABELS = {
  idle: "Not started",
  starting: "Starting…",
  listening: "Listening…",
  user: "You're speaking…",
  thinking: "Thinking…",
  speaking: "Speaking…",
  paused: "Paused: go on, or stop and the answer carries on",
  reconnecting: "Connection lost: reconnecting…",
};

const $ = (id) => document.getElementById(id);
const ui = {
  talk: $("talk"), status: $("status"), problem: $("problem"), level: $("level"), voice: $("voice"),
  speed: $("speed"), speedValue: $("speed-value"), fallback: $("fallback"), detector: $("detector"),
  settings: $("settings"), tools: $("tools"),
  typed: $("typed"), typedText: $("typed-text"), typedSend: $("typed-send"),
};
const transcript = new Transcript($("transcript"));
const waterfall = new Waterfall(document.querySelector("#latency tbody"), $("chart"));
// Exposed for tests and the curious: what this page has received and shown.
const stats = (window.voiceStats = {
  audioBytes: 0, turns: 0, outcomes: {}, interruptions: 0, pauses: 0, reconnects: 0, events: [], states: [],
  config: null, endProbabilities: [],
});
let conversation = null;

function setState(state) {
  if (ui.status.dataset.state === state) return;
  ui.status.dataset.state = state;
  ui.status.textContent = LABELS[state];
  stats.states.push(state);
}

function showProblem(text) {
  ui.problem.hidden = !text;
  ui.problem.textContent = text || "";
}

function key() {
  return new URLSearchParams(location.search).get("key");
}

class Conversation {
  constructor(settings) {
    this.settings = stats.config = settings;
    this.sessionId = "";
    this.pendingAudio = null; // metadata of the next binary (audio) frame
    this.userSpeaking = false;
    this.waiting = new Set(); // turns whose reply has not started
    this.open = new Set(); // turns not ended yet
    this.paused = false;
    this.playing = false;
    this.reconnecting = false;
  }

  derive() {
    if (this.reconnecting) return "reconnecting";
    if (this.paused) return "paused";
    if (this.userSpeaking) return "user";
    if (this.playing) return "speaking";
    if (this.waiting.size) return "thinking";
    return "listening";
  }

  render() {
    if (conversation === this) setState(this.derive());
  }

  async start() {
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) {
      throw new Error(err.name === "NotAllowedError"
        ? "Microphone permission was denied. Allow the microphone for this page and try again."
        : `No microphone could be opened (${err.message}).`);
    }
    this.input = new AudioContext({ sampleRate: INPUT_RATE });
    this.output = new AudioContext({ sampleRate: OUTPUT_RATE });
    await this.input.audioWorklet.addModule("/static/capture-worklet.js");
    await this.output.audioWorklet.addModule("/static/playback-worklet.js");
    this.player = new AudioWorkletNode(this.output, "playback");
    this.player.connect(this.output.destination);
    this.player.port.onmessage = ({ data }) => this.onPlayer(data);
    await this.output.resume();
    this.ws = await this.connect();
    const capture = new AudioWorkletNode(this.input, "capture");
    this.buffer = new Int16Array(FRAME);
    this.filled = 0;
    capture.port.onmessage = ({ data }) => this.onSamples(data);
    this.input.createMediaStreamSource(this.stream).connect(capture);
    await this.input.resume();
    this.render();
  }

  connect() {
    return new Promise((resolve, reject) => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${location.host}/ws${key() ? `?key=${encodeURIComponent(key())}` : ""}`);
      ws.binaryType = "arraybuffer";
      let opened = false;
      ws.onopen = () => {
        opened = true;
        ws.send(JSON.stringify({ config: { ...this.settings, session_id: this.sessionId } }));
        resolve(ws);
      };
      ws.onerror = () => reject(new Error("The gateway is unreachable, or refused this page's key. " +
        "Is the system running? If it needs a key, open the page as /?key=YOUR-KEY."));
      ws.onclose = (e) => {
        if (opened && conversation === this && !this.stopping && ws === this.ws) this.lost(e.code);
      };
      ws.onmessage = (e) => (typeof e.data === "string" ? this.onEvent(JSON.parse(e.data)) : this.onAudio(e.data));
    });
  }

  // The socket dropped: the turns in flight are lost; the session is resumed on a new socket.
  async lost(code) {
    for (const id of this.open) {
      const event = { turn_id: id, outcome: "TURN_OUTCOME_INTERRUPTED", reason: "connection_lost",
        user_text: "", user_text_known: false, heard_text: "", metrics: {} };
      this.ended(event);
    }
    this.player.port.postMessage({ type: "flush" });
    Object.assign(this, { reconnecting: true, paused: false, userSpeaking: false, pendingAudio: null });
    this.waiting.clear();
    enableTyping(false);
    this.render();
    for (const wait of RECONNECT_MS) {
      await new Promise((r) => setTimeout(r, wait));
      if (conversation !== this) return;
      try {
        this.ws = await this.connect();
        stats.reconnects += 1;
        return;
      } catch {
        // the next attempt waits longer
      }
    }
    showProblem(`The connection to the gateway closed (${code}) and could not be made again. ` +
      "Press the button to start a new conversation.");
    stop();
  }

  send(body) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(typeof body === "string" ? body : JSON.stringify(body));
  }

  onSamples(floats) {
    let energy = 0;
    for (let i = 0; i < floats.length; i++) {
      const s = Math.max(-1, Math.min(1, floats[i]));
      energy += s * s;
      this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === FRAME) {
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send(this.buffer.buffer.slice(0));
        this.filled = 0;
      }
    }
    const dbfs = 10 * Math.log10(energy / Math.max(1, floats.length) + 1e-10);
    ui.level.value = Math.max(0, Math.min(1, (dbfs + 60) / 60)); // -60..0 dBFS
  }

  onAudio(data) {
    stats.audioBytes += data.byteLength;
    const pcm = new Int16Array(data);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    const meta = this.pendingAudio || {};
    this.player.port.postMessage({ type: "push", samples, turn: meta.turn_id, offsetMs: meta.offset_ms || 0 },
      [samples.buffer]);
    this.pendingAudio = null;
  }

  onPlayer(data) {
    if (data.type === "state") {
      this.playing = data.playing;
      this.render();
    } else if (data.turn) {
      // Where playback is (or stopped): the gateway keeps what was really heard.
      this.send({ playback: { turn_id: data.turn, played_ms: data.ms } });
    }
  }

  onEvent(event) {
    stats.events.push(event.type);
    switch (event.type) {
      case "session_started":
        this.sessionId = event.session_id;
        if (this.reconnecting) {
          this.reconnecting = false;
          showProblem(event.resumed ? "" : "The connection came back, but the conversation started anew.");
        }
        enableTyping(true);
        break;
      case "speech_started":
        this.userSpeaking = true;
        showProblem(""); // a new turn: the last one's error is over
        transcript.turn(event.turn_id);
        break;
      case "speech_ended":
        stats.endProbabilities.push(event.end_of_turn_probability ?? null);
        this.userSpeaking = false;
        this.waiting.add(event.turn_id);
        this.open.add(event.turn_id);
        break;
      case "text_turn":
        showProblem("");
        transcript.turn(event.turn_id, event.text);
        this.waiting.add(event.turn_id);
        this.open.add(event.turn_id);
        break;
      case "response_audio":
        this.pendingAudio = event;
        this.waiting.delete(event.turn_id);
        if (event.text) transcript.replyPiece(event.turn_id, event.text);
        break;
      case "reply_paused":
        stats.pauses += 1;
        this.paused = true;
        this.player.port.postMessage({ type: "flush" }); // the reply resumes from where it was heard
        break;
      case "reply_resumed":
        this.paused = false;
        if (event.dismissed_turn_id) { // that sound was no turn: the reply plays on
          transcript.drop(event.dismissed_turn_id);
          this.userSpeaking = false;
        }
        break;
      case "interrupted":
        stats.interruptions += 1;
        this.paused = false;
        this.waiting.delete(event.turn_id);
        this.player.port.postMessage({ type: "flush" });
        break;
      case "tool_called":
        for (const call of event.calls) {
          const output = TOOLS[call.name]?.run() ?? `no tool named ${call.name}`;
          transcript.tool(event.turn_id, call.name, call.arguments_json, output);
          this.send({ tool_result: { call_id: call.id, output } });
        }
        break;
      case "turn_ended":
        this.ended(event);
        break;
      case "error":
        showProblem(plainError(event));
        if (event.turn_id) this.waiting.delete(event.turn_id);
        if (!event.session_continues) {
          stop();
          return;
        }
        break;
    }
    this.render();
  }

  ended(event) {
    const outcome = outcomeOf(event);
    stats.turns += 1;
    stats.outcomes[outcome] = (stats.outcomes[outcome] || 0) + 1;
    this.waiting.delete(event.turn_id);
    this.open.delete(event.turn_id);
    transcript.ended(event);
    waterfall.add(stats.turns, event);
  }

  stop() {
    this.stopping = true;
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.send({ control: "CONTROL_ACTION_END_OF_INPUT" });
      this.ws.close();
    }
    this.stream?.getTracks().forEach((t) => t.stop());
    this.input?.close();
    this.output?.close();
  }
}

function settings() {
  const chosen = { input_sample_rate_hz: INPUT_RATE, output_sample_rate_hz: OUTPUT_RATE };
  if (ui.voice.value) chosen.voice = ui.voice.value;
  if (Number(ui.speed.value) !== 1) chosen.speed = Number(ui.speed.value);
  if (ui.detector.value) chosen.end_of_turn_detector = ui.detector.value;
  if (ui.fallback.value && !ui.detector.value) chosen.end_of_turn_fallback_ms = Number(ui.fallback.value);
  if (ui.tools.checked) chosen.tools = Object.values(TOOLS).map((t) => t.declared);
  return chosen;
}

function enableTyping(on) {
  ui.typedText.disabled = ui.typedSend.disabled = !on;
}

async function start() {
  showProblem("");
  ui.talk.disabled = true;
  ui.settings.disabled = true;
  setState("starting");
  conversation = new Conversation(settings());
  try {
    await conversation.start();
    ui.talk.textContent = "Stop conversation";
    ui.talk.setAttribute("aria-pressed", "true");
  } catch (err) {
    showProblem(err.message);
    stop();
  } finally {
    ui.talk.disabled = false;
  }
}

function stop() {
  const current = conversation;
  conversation = null;
  current?.stop();
  enableTyping(false);
  ui.settings.disabled = false;
  ui.level.value = 0;
  ui.talk.textContent = "Start conversation";
  ui.talk.setAttribute("aria-pressed", "false");
  setState("idle");
}

async function loadVoices() {
  try {
    const { voices } = await (await fetch("/voices")).json();
    for (const name of voices) ui.voice.append(new Option(name, name));
  } catch {
    // the default voice only: the TTS cannot be asked now
  }
}

ui.talk.addEventListener("click", () => (conversation ? stop() : start()));
ui.speed.addEventListener("input", () => (ui.speedValue.textContent = `${Number(ui.speed.value).toFixed(1)}×`));
ui.typed.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.typedText.value.trim();
  if (!text || !conversation) return;
  conversation.send({ text });
  ui.typedText.value = "";
});
// For tests: drop the socket as a network would (the page must reconnect and resume).
window.voiceDebug = { drop: () => conversation?.ws?.close(4000, "dropped") };
loadVoices();
