"""An OpenAI Realtime-compatible WebSocket (GA event shapes) over the conversation engine."""
