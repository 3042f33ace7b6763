"""The doors: how requests come in (gRPC, the console, the CLI, broker intake). Each translates a request into
a use case's command and its result back; none decides, stores or re-validates anything itself."""
