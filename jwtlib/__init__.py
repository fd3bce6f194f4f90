"""NATS JWTs: the claims of operators, accounts and users, and a key tool that writes them.

Used by the operator plugin (the decentralized trust chain) and the auth
plugin (auth callout requests and responses); not part of the routing core.
"""
