"""The file service: the `file` worker, the only writer of the blob store."""
