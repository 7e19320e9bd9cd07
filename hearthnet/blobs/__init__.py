"""Content-addressed blobs: BLAKE3 chunk CIDs, manifests, the on-disk store (spec
svc-market-chat-file §3). The `file` worker is the only writer of the store."""
