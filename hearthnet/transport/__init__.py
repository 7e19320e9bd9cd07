"""Peer transport (spec core-bus-transport §7–§12; DESIGN.md §3): a library, no process.

    tls        the node's self-signed TLS identity (the cert key IS the device Ed25519 key)
    x509der    that certificate and key in DER/PEM, written and read without cryptography
    pinning    first-seen certificate fingerprint per full NodeID (TOFU)
    signing    the signed `X-HearthNet-*` request/response envelope + replay cache
    trust      caller trust level from the community manifest
    ratelimit  per-(peer, capability) and per-peer token buckets
    peer_http  without aiohttp: endpoints, a peer's error body, the pinned manifest GET
    client     PeerClient: pinned HTTPS calls, SSE streams and sync routes to peers
    aiohttp_tls  aiohttp's import-time client contexts without their CA bundles (gateway)

Submodules are imported explicitly (`from hearthnet.transport.client import PeerClient`)
so that importing this package stays cheap for the CLI.
"""
