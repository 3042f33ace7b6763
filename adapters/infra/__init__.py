"""Infrastructure: the store, the model gateway, tool connectors, effects and brokers, retrieval, documents,
metrics, tracing, logs, secrets, TLS, and the bounded child process candidates run in."""
