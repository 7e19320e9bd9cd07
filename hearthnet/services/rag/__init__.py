"""Knowledge: corpora of the community's documents, chunked, embedded and searched (spec §3)."""
