"""The capability broker (DESIGN.md §4): registry, routing, queueing, heartbeats, traces."""
