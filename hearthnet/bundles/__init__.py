"""Sneakernet bundles: a directory for a USB stick that carries signed log events and
blobs from one node to another that never meets it on a network.

    format.py    the layout, names, the signed bundle manifest (bundle.json), BundleError
    pieces.py    blobs split into FAT32-safe pieces, and read back chunk by verified chunk
    node.py      what export/import need from the running node: its local API, and a
                 read-only view of its blob store
    summary.py   "what I have" summaries (have/<node>.json) and what `--since` knows
    export.py    `hearthnet bundle export`
    verify.py    every check of a bundle, done before anything is imported
    importer.py  `hearthnet bundle import`
"""
