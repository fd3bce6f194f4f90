"""The NATS client protocol on the wire: the sans-I/O parser and encoders, ``-ERR`` texts, headers.

Nothing here knows about connections, accounts or servers: bytes in,
operations out, and the bytes a server sends back.
"""
