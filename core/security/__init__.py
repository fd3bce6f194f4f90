"""Identity and policy: NKeys, publish/subscribe permissions, TLS peer certificates."""
