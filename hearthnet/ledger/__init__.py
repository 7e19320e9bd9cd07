"""The community event log (spec core-events-discovery §1–7; DESIGN.md §2).

    events     the signed envelope, the closed set of event types, co-signatures
    views      CommunityView: membership, invites, policy, the community manifest
    store      EventLog: the only writer of <state_dir>/events.sqlite
    snapshots  signed snapshots of the views, and replay from one

The ledger worker (`hearthnet.services.ledger`) is the only process that opens the log
for writing; everything else reaches it through the `community.log.*` capabilities.
"""
