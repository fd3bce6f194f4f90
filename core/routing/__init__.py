"""Routing: subjects, the subscription index, accounts, and how one message reaches its receivers.

Accounts own a sublist each; exports and imports connect them; subject
mappings rewrite what is published; in-process clients subscribe with
callbacks. Everything here is independent of sockets.
"""
