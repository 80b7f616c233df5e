"""Every RPC of every service, from the generated descriptors."""

from __future__ import annotations

from voice.v1 import gateway_pb2, tts_pb2, vad_pb2, voxtral_pb2

SERVICES = {"gateway": gateway_pb2, "vad": vad_pb2, "voxtral": voxtral_pb2, "tts": tts_pb2}


def methods() -> list[tuple[str, str, bool, bool]]:
    return [(name, f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming)
            for name, module in SERVICES.items() for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]
