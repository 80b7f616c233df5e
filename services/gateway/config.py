"""Gateway settings (env prefix GATEWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.limits import END_SILENCE_MS
from services.common.settings import RedisSettings, ServerSettings


class AdmissionSettings(BaseModel):
    """Refusing a new session at start when the model stages are at capacity, from the load they
    measure and report (GetLoad), so the sessions already admitted keep working."""

    model_config = {"frozen": True}

    enabled: bool = Field(True, description="Off: every session is admitted (up to max_sessions).")
    poll_s: float = Field(1.0, gt=0, le=60, description="How often the stages' load is read.")
    max_utilisation: float = Field(0.85, gt=0, le=1, description="A stage's slot use, with one more session's "
                                   "measured share, above this: refused.")
    max_late_ms: float = Field(400.0, ge=0, le=60_000, description="Work starting this late past its need time "
                               "(95th percentile over the stage's window): refused; a TTS clause that late is "
                               "heard as a gap.")
    unmeasured_sessions: int = Field(2, ge=1, le=100_000, description="Speaking sessions at most while one session's "
                                     "share of a stage's load is not yet measured (a cold start's burst).")
    unspoken_grace_s: float = Field(15.0, ge=0, le=600, description="A session admitted this recently that has "
                                    "not spoken yet counts as speaking (a burst of arrivals is not admitted whole "
                                    "before any is measured); later, as idle (idle sessions lock nobody out).")


class GatewaySettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_nested_delimiter="__", extra="ignore", frozen=True)

    port: int = Field(50051, ge=0, le=65535)
    max_message_bytes: int = Field(256 * 1024, ge=64 * 1024, le=64 * 1024 * 1024,
                                   description="Largest gRPC request (8 s of 16 kHz audio; clients stream 20-100 ms "
                                   "chunks); larger gets RESOURCE_EXHAUSTED. Each message a session has in flight is "
                                   "held several times on its way to the VAD: this bounds a session's memory.")
    max_frame_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024,
                                 description="Largest WebSocket frame (page and Realtime; base64 audio is 4/3 its "
                                 "size); larger closes the socket with 1009.")
    api_key: SecretStr | None = Field(None, description="Key clients must send (gRPC metadata, WebSocket ?key=).")
    api_key_file: Path | None = Field(None, description="A file holding the keys, one per line (e.g. a mounted "
                                      "secret); each key is its own client identity. Lines starting # are comments.")
    auth_disabled: bool = Field(False, description="No key at all: for local use only, say so explicitly.")
    stage_tls_ca_file: Path | None = Field(None, description="Dial the stages over TLS, trusting this CA (PEM).")
    stage_tls_cert_file: Path | None = Field(None, description="Client certificate for stages that require one "
                                             "(mutual TLS), with stage_tls_key_file.")
    stage_tls_key_file: Path | None = Field(None, description="Private key of stage_tls_cert_file.")
    stage_tls_server_name: str | None = Field(None, description="The name the stages' certificates are checked "
                                              "against, when it is not the target's host.")
    stage_token: SecretStr | None = Field(None, description="Shared token sent to every stage (their "
                                          "*_AUTH_TOKEN): only gateways can call them.")
    vad_target: str = Field("127.0.0.1:50052", description="host:port, or dns:///name:port for every replica.")
    voxtral_target: str = "127.0.0.1:50053"
    tts_target: str = "127.0.0.1:50054"
    redis: RedisSettings = RedisSettings()
    web_port: int = Field(8080, ge=0, le=65535, description="The browser page and its WebSocket; 0 picks a port.")
    web_enabled: bool = Field(True, description="Serve the browser page.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus /metrics over HTTP; 0 turns it off.")
    max_sessions: int = Field(256, ge=1, le=100_000, description="Concurrent sessions; more: RESOURCE_EXHAUSTED.")
    max_sessions_per_client: int = Field(32, ge=1, le=100_000, description="Concurrent sessions of one client "
                                         "(one API key, from any address); more: RESOURCE_EXHAUSTED, so one "
                                         "client cannot take every session.")
    max_sessions_per_address: int = Field(64, ge=1, le=100_000, description="Concurrent sessions from one "
                                          "address, whatever their keys (the only per-client rule when keys are "
                                          "off). Behind a proxy every client shares its address: raise it to "
                                          "max_sessions there.")
    write_timeout_s: float = Field(15.0, gt=0, le=600, description="A client that reads nothing of what is "
                                   "sent to it for this long (its buffers full) is closed, freeing its session.")
    admission: AdmissionSettings = AdmissionSettings()
    session_audio_bytes: int = Field(512 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024,
                                     description="Audio waiting for the VAD per session, in bytes; a client "
                                     "sending faster is slowed down (not read) until there is room.")
    process_audio_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024, le=16 * 1024 * 1024 * 1024,
                                     description="The same, for all sessions of the gateway together.")
    max_audio_speed: float = Field(8.0, ge=1, le=1000, description="Audio faster than this many times real time, "
                                   "after a burst of audio_burst_s, is read slower: one client cannot make the VAD "
                                   "work for many.")
    audio_burst_s: float = Field(60.0, ge=0, le=3600, description="Audio a session may send at once (a recording) "
                                 "before the speed limit applies.")
    idle_timeout_s: float = Field(120.0, gt=0, le=86_400, description="A session that sends nothing (no audio, "
                                  "no control; a microphone's silence is something) for this long is closed, with "
                                  "an error event saying so; so is a stream that never sends its config.")
    buffer_s: float = Field(35.0, ge=5, le=600, description="Input audio kept per session to cut utterances from "
                            "(an utterance of max_utterance_s and the wait for its end).")
    max_utterance_s: float = Field(30.0, gt=0, le=600, description="Longer utterances keep their last part.")
    default_output_rate_hz: int = Field(24000, ge=8000, le=48000)
    default_end_silence_ms: int = END_SILENCE_MS.field(800, "Seed: 800 ms.")
    max_instructions_chars: int = Field(2000, ge=0, le=100_000)
    first_clause_words: int = Field(6, ge=1, le=100, description="The first clause is cut after this many words.")
    first_clause_s: float = Field(1.2, ge=0, le=30, description="...or once it would take this long to say "
                                  "(estimated from its letters; 0: words only). Bounds the first audio's cost.")
    clause_growth: float = Field(2.0, ge=0, le=20, description="A later clause takes at most this many times as "
                                 "long to say as the one before (0: no bound), so its synthesis ends while that "
                                 "one is heard when synthesis is faster than real time by more than this.")
    tts_prefetch: int = Field(0, ge=0, le=8, description="Clauses sent to TTS ahead of the one being sent: useful "
                              "with several TTS slots or replicas (each waits inside its own deadline).")
    reply_lead_ms: int = Field(200, ge=0, le=10_000, description="Reply audio is sent at real time, at most this "
                               "far ahead of what the listener has heard (what a barge-in cannot take back).")
    reply_piece_ms: int = Field(40, ge=5, le=1000, description="Reply audio goes out in pieces of this length.")
    barge_in_reversible: bool = Field(True, description="Speech during a reply pauses it (reply_paused) until it "
                                      "is known to be a turn; off: any speech cancels the reply at once.")
    barge_in_min_voiced_ms: int = Field(700, ge=0, le=10_000, description="Sound over a reply with less voice "
                                        "than this is not a turn (a cough, a door, \"mm-hm\"): the reply resumes.")
    barge_in_timeout_ms: int = Field(1500, ge=100, le=30_000, description="Speech still going this long after it "
                                     "paused a reply is a turn: the reply is cancelled without waiting for its end.")
    backchannels: tuple[str, ...] = Field(
        ("mm-hm", "mhm", "mm", "hmm", "uh-huh", "uh huh", "yeah", "yes", "yep", "yup", "ok", "okay", "right",
         "sure", "i see", "got it", "alright", "all right", "oh", "ah", "wow", "cool", "nice", "true", "exactly"),
        description="Words that alone, over a reply, are listening and not a turn (compared without case and "
                    "punctuation).")
    speculate: bool = Field(True, description="Start the reply on a pause hint; its output waits for speech-ended.")
    speculate_min_probability: float = Field(0.3, ge=0, le=1, description="...when the end-of-turn model leans "
                                             "complete at least this much (a hint with no probability: always).")
    tool_timeout_s: float = Field(30.0, gt=0, le=600, description="A reply that called a client tool waits this "
                                  "long for its result; then it ends (failed, the reason says which tool).")
    tool_filler: str = Field("One moment.", max_length=200, description="Said while a tool's result is awaited, "
                             "once per call round, if it takes longer than tool_filler_after_ms (empty: never).")
    tool_filler_after_ms: int = Field(1000, ge=0, le=60_000, description="...this long after the call.")
    max_tool_rounds: int = Field(4, ge=1, le=16, description="Calls and results one reply may go through before "
                                 "it must answer in words (a model that calls on and on ends the reply).")
    vad_timeout_s: float = Field(5.0, gt=0, le=60, description="Opening a VAD stream.")
    voxtral_timeout_s: float = Field(15.0, gt=0, le=600, description="One reply, first token to last.")
    tts_timeout_s: float = Field(3.0, gt=0, le=120, description="One clause (seed: 3 s).")
    transcribe_timeout_s: float = Field(15.0, gt=0, le=600)
    unary_timeout_s: float = Field(5.0, gt=0, le=60, description="ListVoices, GetInfo and other unary calls.")

    @model_validator(mode="after")
    def _buffer_holds_an_utterance(self) -> GatewaySettings:
        if self.buffer_s <= self.max_utterance_s:
            raise ValueError(f"buffer_s ({self.buffer_s:g}) must be longer than max_utterance_s "
                             f"({self.max_utterance_s:g}): utterances are cut from that buffer")
        return self

    @model_validator(mode="after")
    def _stage_security(self) -> GatewaySettings:
        if self.auth_token is not None:
            raise ValueError("the gateway's callers use api_key (GATEWAY_API_KEY); auth_token is for stage services")
        if (self.stage_tls_cert_file is None) != (self.stage_tls_key_file is None):
            raise ValueError("stage_tls_cert_file and stage_tls_key_file go together: set both, or neither")
        if self.stage_tls_cert_file is not None and self.stage_tls_ca_file is None:
            raise ValueError("a client certificate needs TLS: set stage_tls_ca_file too")
        for path in (self.stage_tls_ca_file, self.stage_tls_cert_file, self.stage_tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        return self

    @model_validator(mode="after")
    def _auth_configured(self) -> GatewaySettings:
        # An empty key would match nothing on one endpoint and, unchecked, could read as "no auth" on
        # another: auth fails closed, so an empty key stops the gateway here.
        if self.api_key_file is not None and not self.api_key_file.is_file():
            raise ValueError(f"api_key_file {self.api_key_file} does not exist")
        if self.api_key_file is not None and not file_keys(self.api_key_file):
            raise ValueError(f"api_key_file {self.api_key_file} holds no key: put one key per line in it")
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key (GATEWAY_API_KEY) is empty: set a key, or auth_disabled=true for local use")
        if not self.auth_disabled and self.api_key is None and self.api_key_file is None:
            raise ValueError("set api_key or api_key_file (GATEWAY_API_KEY, GATEWAY_API_KEY_FILE), "
                             "or auth_disabled=true (GATEWAY_AUTH_DISABLED) for local use")
        return self

    def keys(self) -> tuple[str, ...] | None:
        """The API keys in force (GATEWAY_API_KEY and the file's), or None when auth is disabled."""
        keys = [self.api_key.get_secret_value().strip()] if self.api_key is not None else []
        if self.api_key_file is not None:
            keys += file_keys(self.api_key_file)
        return tuple(keys) or None


def file_keys(path: Path) -> list[str]:
    """The keys of a key file: one per line; blank lines and # comments skipped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
