"""Peer transport (spec core-bus-transport §7–§12; DESIGN.md §3): a library, no process.

    tls        the node's self-signed TLS identity (the cert key IS the device Ed25519 key)
    pinning    first-seen certificate fingerprint per full NodeID (TOFU)
    signing    the signed `X-HearthNet-*` request/response envelope + replay cache
    trust      caller trust level from the community manifest
    ratelimit  per-(peer, capability) and per-peer token buckets
    client     PeerClient: pinned HTTPS calls, SSE streams and sync routes to peers

Submodules are imported explicitly (`from hearthnet.transport.client import PeerClient`)
so that importing this package stays cheap for the CLI.
"""
