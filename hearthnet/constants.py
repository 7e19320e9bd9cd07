"""Interop constants of the spec (core-identity-config §11): changing them breaks peers."""
import re

MANIFEST_TTL_SECONDS = 30
MANIFEST_REPUBLISH_INTERVAL_SECONDS = 20
RPC_DEFAULT_TIMEOUT_SECONDS = 30
LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS = 120
STREAM_WINDOW_FRAMES = 16
HEALTH_WINDOW_CALLS = 100
HEALTH_QUARANTINE_THRESHOLD = 0.5
HEALTH_QUARANTINE_SECONDS = 60
TRACE_RING_BUFFER = 10_000
LOG_RETENTION_DAYS = 14
MAX_REQUEST_BYTES = 16 * 1024 * 1024

# Broker timing (DESIGN.md §4): beat every second, dead after ~3 s of silence.
HEARTBEAT_INTERVAL_SECONDS = 1.0
HEARTBEAT_DEAD_AFTER_SECONDS = 3.0

# Stream flow control (core-bus-transport §7; README "Flow control"). A producer may have
# at most STREAM_WINDOW_FRAMES frames of one stream not yet consumed by the final reader;
# the consumer acknowledges every STREAM_ACK_EVERY_FRAMES frames it has consumed, and at
# the latest STREAM_ACK_TIMEOUT_SECONDS after consuming one (so a reader that takes long
# over each frame still shows it is alive). A reader that is merely slow is never cut; one
# that consumed no frame for STREAM_STALL_TIMEOUT_SECONDS while the window was full
# (config `bus.stream_stall_seconds`) gets its stream ended with `timeout`. (The spec's
# 5 s ack timeout as a cut-off would end a reader that takes 0.7 s per frame.)
STREAM_ACK_EVERY_FRAMES = 8
STREAM_ACK_TIMEOUT_SECONDS = 5.0
STREAM_STALL_TIMEOUT_SECONDS = 60.0

# RAG corpus names (spec svc-llm-embed-rag §3.1): one rule for the rag worker, `rag.ask`,
# the CLI and config, kept here so checking a name never imports the worker's numpy.
CORPUS_NAME_RE = re.compile(r"^[a-z0-9-]{1,64}$")

# Emergency detector (spec svc-emergency-ui §1.4; README "Emergency detector"). Fixed here,
# not config (interop); only the probe targets are configurable.
EMERGENCY_PROBE_INTERVAL_ONLINE = 10.0  # seconds between probe rounds while online
EMERGENCY_PROBE_INTERVAL_OFFLINE = 2.0  # ... while degraded or offline
EMERGENCY_PROBE_TIMEOUT_SECONDS = 2.0  # one probe; a hanging target is cancelled here
EMERGENCY_TRANSITION_DEBOUNCE_SECONDS = 30.0  # >=2 failing this long -> offline
EMERGENCY_RECOVERY_SECONDS = 10.0  # all passing this long -> online
EMERGENCY_FLAP_WINDOW_SECONDS = 60.0  # more than EMERGENCY_FLAP_MAX_TRANSITIONS in this window
EMERGENCY_FLAP_MAX_TRANSITIONS = 3  # ... holds the more pessimistic state until it has passed
SYNC_INTERVAL_OFFLINE_SECONDS = 30.0  # gossip sync period while this node is offline (300 s online)
FILE_BIG_TRANSFER_BYTES = 16 * 1024 * 1024  # offline: transfers above this yield to small ones
