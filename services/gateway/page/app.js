// One-click speech-to-speech: microphone -> PCM16 16 kHz over a WebSocket -> reply audio played back.
const INPUT_RATE = 16000;
const OUTPUT_RATE = 24000;
const FRAME = INPUT_RATE / 50; // 20 ms per message
const STAGES = [
  ["endpoint_ms", "endpoint", "end of speech wait"],
  ["voxtral_ttft_ms", "voxtral", "Voxtral first token"],
  ["tts_ttfb_ms", "tts", "TTS first audio"],
  ["e2e_ms", "e2e", "end of speech to first audio"],
];

const ui = {
  talk: document.getElementById("talk"),
  status: document.getElementById("status"),
  problem: document.getElementById("problem"),
  reply: document.getElementById("reply"),
  rows: document.querySelector("#latency tbody"),
};
// Exposed for tests and the curious: what this page has received.
const stats = (window.voiceStats = { audioBytes: 0, turns: 0, interruptions: 0, pauses: 0, events: [] });
let conversation = null;

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showProblem(text) {
  ui.problem.hidden = !text;
  ui.problem.textContent = text || "";
}

class Conversation {
  constructor() {
    this.pending = null; // metadata of the next binary (audio) frame
    this.turnText = "";
    this.thinking = false;
  }

  async start() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) {
      throw new Error(err.name === "NotAllowedError"
        ? "Microphone permission was denied. Allow the microphone for this page and try again."
        : `No microphone could be opened (${err.message}).`);
    }
    this.stream = stream;
    this.input = new AudioContext({ sampleRate: INPUT_RATE });
    this.output = new AudioContext({ sampleRate: OUTPUT_RATE });
    await this.input.audioWorklet.addModule("/static/capture-worklet.js");
    await this.output.audioWorklet.addModule("/static/playback-worklet.js");
    this.player = new AudioWorkletNode(this.output, "playback");
    this.player.connect(this.output.destination);
    this.player.port.onmessage = ({ data }) => this.onPlayer(data);
    await this.output.resume();
    this.ws = await this.connect();
    const source = this.input.createMediaStreamSource(stream);
    const capture = new AudioWorkletNode(this.input, "capture");
    this.buffer = new Int16Array(FRAME);
    this.filled = 0;
    capture.port.onmessage = ({ data }) => this.onSamples(data);
    source.connect(capture);
    await this.input.resume();
    setStatus("listening", "Listening…");
  }

  connect() {
    return new Promise((resolve, reject) => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const key = new URLSearchParams(location.search).get("key");
      const ws = new WebSocket(`${scheme}://${location.host}/ws${key ? `?key=${encodeURIComponent(key)}` : ""}`);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        ws.send(JSON.stringify({ config: { input_sample_rate_hz: INPUT_RATE, output_sample_rate_hz: OUTPUT_RATE } }));
        resolve(ws);
      };
      ws.onerror = () => reject(new Error("The gateway is unreachable, or refused this page's key. " +
        "Is the system running? If it needs a key, open the page as /?key=YOUR-KEY."));
      ws.onclose = (e) => {
        if (conversation === this && !this.stopping) {
          showProblem(`The connection to the gateway closed (${e.code}). Press the button to start again.`);
          stop();
        }
      };
      ws.onmessage = (e) => (typeof e.data === "string" ? this.onEvent(JSON.parse(e.data)) : this.onAudio(e.data));
    });
  }

  onSamples(floats) {
    for (let i = 0; i < floats.length; i++) {
      const s = Math.max(-1, Math.min(1, floats[i]));
      this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === FRAME) {
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send(this.buffer.buffer.slice(0));
        this.filled = 0;
      }
    }
  }

  onAudio(data) {
    stats.audioBytes += data.byteLength;
    const pcm = new Int16Array(data);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    const meta = this.pending || {};
    this.player.port.postMessage({ type: "push", samples, turn: meta.turn_id, offsetMs: meta.offset_ms || 0 },
      [samples.buffer]);
    this.pending = null;
  }

  onPlayer(data) {
    if (data.type === "state") this.onPlaying(data.playing);
    else if (data.turn && this.ws.readyState === WebSocket.OPEN) {
      // Where playback is (or stopped): the gateway keeps what was really heard.
      this.ws.send(JSON.stringify({ playback: { turn_id: data.turn, played_ms: data.ms } }));
    }
  }

  onPlaying(playing) {
    if (playing) setStatus("speaking", "Speaking…");
    else setStatus(this.thinking ? "thinking" : "listening", this.thinking ? "Thinking…" : "Listening…");
  }

  onEvent(event) {
    stats.events.push(event.type);
    switch (event.type) {
      case "speech_started":
        setStatus("listening", "Listening…");
        break;
      case "speech_ended":
        this.thinking = true;
        this.turnText = "";
        ui.reply.textContent = "";
        setStatus("thinking", "Thinking…");
        break;
      case "response_text":
        this.turnText += event.delta;
        ui.reply.textContent = this.turnText;
        break;
      case "response_audio":
        this.pending = event;
        break;
      case "reply_paused":
        stats.pauses += 1;
        this.player.port.postMessage({ type: "flush" }); // the reply resumes from where it was heard
        setStatus("listening", "Listening…");
        break;
      case "reply_resumed":
        break;
      case "interrupted":
        stats.interruptions += 1;
        this.player.port.postMessage({ type: "flush" });
        this.thinking = false;
        setStatus("listening", "Listening…");
        break;
      case "turn_completed":
        stats.turns += 1;
        this.thinking = false;
        addLatencyRow(stats.turns, event.metrics);
        break;
      case "error":
        showProblem(plainError(event));
        if (!event.session_continues) stop();
        break;
    }
  }

  stop() {
    this.stopping = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ control: "CONTROL_ACTION_END_OF_INPUT" }));
      this.ws.close();
    }
    this.stream?.getTracks().forEach((t) => t.stop());
    this.input?.close();
    this.output?.close();
  }
}

function plainError(event) {
  const stage = (event.message.match(/^(vad|voxtral|tts) failed/) || [])[1];
  const names = { vad: "speech detection", voxtral: "the language model", tts: "the voice" };
  if (stage && event.code === "ERROR_CODE_UNAVAILABLE") return `Part of the system is down (${names[stage]}). It will be used again on your next sentence.`;
  if (event.code === "ERROR_CODE_DEADLINE_EXCEEDED") return "That answer took too long and was dropped. Please say it again.";
  if (event.code === "ERROR_CODE_RESOURCE_EXHAUSTED") return "The system is busy right now. Please try again in a moment.";
  return event.message;
}

function addLatencyRow(turn, metrics) {
  const longest = Math.max(1, ...STAGES.map(([key]) => metrics[key] || 0));
  const row = document.createElement("tr");
  row.dataset.latencyRow = String(turn);
  const bars = STAGES.map(([key, css, label]) => {
    const ms = metrics[key] || 0;
    const width = Math.round((ms / longest) * 100);
    return `<div class="bar" title="${label}"><div class="track"><span class="fill ${css}" style="width:${width}%">` +
      `</span></div><span>${label}: ${Math.round(ms)} ms</span></div>`;
  }).join("");
  row.innerHTML = `<th scope="row">${turn}</th><td><div class="bars">${bars}</div></td>`;
  ui.rows.prepend(row);
}

async function start() {
  showProblem("");
  ui.talk.disabled = true;
  setStatus("starting", "Starting…");
  conversation = new Conversation();
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
  ui.talk.textContent = "Start conversation";
  ui.talk.setAttribute("aria-pressed", "false");
  setStatus("idle", "Not started");
}

ui.talk.addEventListener("click", () => (conversation ? stop() : start()));
