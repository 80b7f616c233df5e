// The openai Node SDK's two Realtime classes, unchanged, against /v1/realtime (the SDK always
// builds a wss: URL, so the gateway serves TLS here):
//   node --experimental-websocket realtime_clients.mjs BASE_URL KEY AUDIO_FILE
// BASE_URL: https://host:port/v1; KEY: an API key or a client secret; AUDIO_FILE: 24 kHz PCM16 speech
// followed by silence. Each class: a spoken turn (server VAD), a typed turn, and a typed question
// talked over while its answer plays. Every server event is logged with its time. Prints one JSON line.
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const [baseURL, apiKey, audioFile] = process.argv.slice(2);
const audio = readFileSync(audioFile);
const CHUNK = 24000 * 2 / 50; // 20 ms

function next(rt, type, timeoutMs = 120000, count = 1) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} in ${timeoutMs} ms`)), timeoutMs);
    let left = count;
    rt.on(type, (event) => { if (--left === 0) { clearTimeout(timer); resolve(event); } });
  });
}

function send(rt, pcm) {
  for (let i = 0; i < pcm.length; i += CHUNK) {
    rt.send({ type: "input_audio_buffer.append", audio: pcm.subarray(i, i + CHUNK).toString("base64") });
  }
}

function note(event) {
  const logged = { type: event.type, t: performance.now() / 1000 };
  if (event.response) { logged.response = event.response.id; logged.status = event.response.status; }
  else if (event.response_id) logged.response = event.response_id;
  return logged;
}

const seen = [];

async function converse(name, open) {
  seen.length = 0;
  const client = new OpenAI({ apiKey, baseURL });
  const rt = await open(client);
  const deltas = { audio: 0, transcript: "" };
  rt.on("event", (event) => seen.push(note(event)));
  rt.on("response.output_audio.delta", (e) => { deltas.audio += Buffer.from(e.delta, "base64").length; });
  rt.on("response.output_audio_transcript.delta", (e) => { deltas.transcript += e.delta; });
  rt.on("error", (e) => seen.push({ type: "error", message: `${e.message ?? JSON.stringify(e)} ${e.cause ?? ""} ${e.error?.message ?? ""}` }));
  await next(rt, "session.created");
  rt.send({ type: "session.update", session: { type: "realtime", instructions: "Be brief.",
    audio: { input: { turn_detection: { type: "server_vad", silence_duration_ms: 500 } } } } });
  await next(rt, "session.updated");
  const spokenDone = next(rt, "response.done");
  send(rt, audio);
  const spoken = await spokenDone;
  const spokenAudio = deltas.audio;
  const spokenTranscript = deltas.transcript;
  deltas.audio = 0;
  deltas.transcript = "";
  rt.send({ type: "conversation.item.create", item: { id: `msg_${name}`, type: "message", role: "user",
    content: [{ type: "input_text", text: "What is a good book for a train ride?" }] } });
  const typedDone = next(rt, "response.done");
  rt.send({ type: "response.create", response: { output_modalities: ["audio"] } });
  const typed = await typedDone;
  const typedAudio = deltas.audio;
  // Talked over: speech sent once the answer's audio flows; its response is cancelled, then the speech answered.
  rt.send({ type: "conversation.item.create", item: { type: "message", role: "user",
    content: [{ type: "input_text", text: "Tell me a long story about a night train across the mountains." }] } });
  const bothDone = next(rt, "response.done", 120000, 2);
  const talking = next(rt, "response.output_audio.delta");
  rt.send({ type: "response.create" });
  await talking;
  send(rt, audio);
  await bothDone;
  rt.close();
  return {
    spoken: { status: spoken.response.status, audioBytes: spokenAudio, transcript: spokenTranscript,
      final: spoken.response.output?.[0]?.content?.[0]?.transcript ?? null },
    typed: { status: typed.response.status, audioBytes: typedAudio },
    events: seen,
  };
}

const result = {};
try {
  result.websocket = await converse("websocket", async (client) => new OpenAIRealtimeWebSocket({ model: "voxtral" }, client));
  result.ws = await converse("ws", (client) => OpenAIRealtimeWS.create(client, { model: "voxtral" }));
} catch (err) {
  result.failure = String(err?.stack ?? err);
  result.seen = seen;
}
// Exit once the line is written: a pipe takes 64 KiB at a time, and exit() drops what is left.
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
