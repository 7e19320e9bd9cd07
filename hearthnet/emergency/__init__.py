"""The emergency detector (spec svc-emergency-ui §1; README "Emergency detector"): probes
(probes.py), the online/degraded/offline state machine with an injected clock (state.py),
and a follower other workers use to react to the mode (follow.py)."""
