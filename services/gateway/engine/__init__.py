"""The conversation engine: typed inputs in, typed events out, stages reached through a Protocol.

Nothing here knows gRPC or WebSockets; the gateway's adapters (server.py, web.py) translate."""
