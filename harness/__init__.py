"""What the tests and the benchmarks share to drive the real system: its processes on loopback,
Redis, recordings and speech, a conversation client, a speech recogniser, hostile clients."""
