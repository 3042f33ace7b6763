"""Adapters: the outside world behind the engine's ports (CLI, store, gRPC, model gateway, tools)."""
