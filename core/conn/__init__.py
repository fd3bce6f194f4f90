"""Client connections: the NATS protocol over a byte transport, the TLS handshake, authentication."""
