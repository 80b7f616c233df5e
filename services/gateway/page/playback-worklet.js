// A queue of reply audio, played as it arrives and flushed at once on barge-in.
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.playing = false;
    this.port.onmessage = ({ data }) => {
      if (data.type === "push") this.queue.push(data.samples);
      else if (data.type === "flush") { this.queue = []; this.offset = 0; }
    };
  }
  process(_, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset >= head.length) { this.queue.shift(); this.offset = 0; }
    }
    out.fill(0, i);
    const playing = this.queue.length > 0;
    if (playing !== this.playing) { this.playing = playing; this.port.postMessage({ playing }); }
    return true;
  }
}
registerProcessor("playback", PlaybackProcessor);
