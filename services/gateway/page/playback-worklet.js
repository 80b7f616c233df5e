// A queue of reply audio, played as it arrives and dropped at once on reply_paused or interrupted.
// It tells the page where playback is (reply and position on the reply's timeline), so the
// gateway keeps the words really heard.
const REPORT_EVERY_S = 0.2;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.playing = false;
    this.sinceReport = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === "push") this.queue.push(data);
      else if (data.type === "flush") {
        this.report("stopped");
        this.queue = [];
        this.offset = 0;
      }
    };
  }
  position() {
    const head = this.queue[0] || this.last;
    if (!head) return null;
    const played = head === this.queue[0] ? this.offset : head.samples.length;
    return { turn: head.turn, ms: head.offsetMs + (played / sampleRate) * 1000 };
  }
  report(kind) {
    const at = this.position();
    if (at) this.port.postMessage({ type: kind, turn: at.turn, ms: at.ms });
  }
  process(_, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.samples.length - this.offset);
      out.set(head.samples.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset >= head.samples.length) { this.last = this.queue.shift(); this.offset = 0; }
    }
    out.fill(0, i);
    const playing = this.queue.length > 0;
    if (playing !== this.playing) { this.playing = playing; this.port.postMessage({ type: "state", playing }); }
    this.sinceReport += out.length / sampleRate;
    if (playing && this.sinceReport >= REPORT_EVERY_S) { this.sinceReport = 0; this.report("played"); }
    return true;
  }
}
registerProcessor("playback", PlaybackProcessor);
