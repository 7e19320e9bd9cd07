"""What a service worker provides to the broker (spec core-bus-transport §1, §2).

A Service lists Capabilities; each has a descriptor (the contract's fields) and an async
handler. The worker runtime (`hearthnet.bus.worker`) connects the service to the broker,
announces the descriptors, heartbeats and dispatches requests.

Handler contract:
- `await handler(request)` returns either a dict (a non-stream response
  `{"output": ..., "meta": ...}`) or an async iterator of `(event, data)` pairs for a
  stream (`("token", {...})`, ..., ending with `("done", meta)`). The handler decides from
  `request.stream` which one to return.
- Errors are raised as `HearthNetError(code, message)` with a contract error code.
- Cancellation: when the caller goes away the runtime cancels the handler's task (and
  closes the iterator); a handler must release its resources in `finally` blocks.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Union

from hearthnet.identity.canonical import canonical_json

StreamFrames = AsyncIterator[tuple[str, dict[str, Any]]]
HandlerResult = Union[dict[str, Any], StreamFrames]


async def done_data(frames: StreamFrames) -> dict[str, Any]:
    """Run a handler's stream to its end and give its `done` frame's data: how a stream
    capability answers a unary call with the same body."""
    done: dict[str, Any] = {}
    async for event, data in frames:
        if event == "done":
            done = data
    return done
Handler = Callable[["Request"], Awaitable[HandlerResult]]


@dataclass(slots=True)  # one per call
class Request:
    capability: str
    version: str
    body: dict[str, Any]
    stream: bool = False
    caller: str = ""
    trace_id: str = ""
    deadline: float = 0.0  # absolute time.monotonic() seconds; 0 = none

    @property
    def params(self) -> dict[str, Any]:
        p = self.body.get("params")
        return p if isinstance(p, dict) else {}

    @property
    def input(self) -> dict[str, Any]:
        i = self.body.get("input")
        return i if isinstance(i, dict) else {}


@dataclass
class Capability:
    name: str
    handler: Handler
    version: str = "1.0"
    stability: str = "stable"
    request_schema: dict[str, Any] = field(default_factory=dict)
    response_schema: dict[str, Any] | None = None
    stream_schema: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    max_concurrent: int = 4
    trust_required: str = "member"
    timeout_seconds: int = 30
    idempotent: bool = False

    def schema_hash(self) -> str:
        """CONTRACT §11: BLAKE3 over the canonical JSON of name, version and schemas."""
        import blake3

        doc = {
            "name": self.name,
            "version": self.version,
            "request_schema": self.request_schema,
            "response_schema": self.response_schema,
            "stream_schema": self.stream_schema,
        }
        return "blake3:" + blake3.blake3(canonical_json(doc)).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        """The wire descriptor announced to the broker (everything but the handler)."""
        return {
            "name": self.name,
            "version": self.version,
            "stability": self.stability,
            "schema_hash": self.schema_hash(),
            "params": copy.deepcopy(self.params),
            "max_concurrent": self.max_concurrent,
            "trust_required": self.trust_required,
            "timeout_seconds": self.timeout_seconds,
            "idempotent": self.idempotent,
            "streams": self.stream_schema is not None,
        }


class Service(Protocol):
    name: str

    def capabilities(self) -> list[Capability]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """Free-form health blob; a `note` key is shown by `hearthnet status`."""
        ...
