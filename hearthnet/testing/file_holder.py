"""A fake holder of one blob for the file-transfer tests: a HostilePeer (its own key, its
own certificate, a signed manifest) that offers `file.read` and `file.list` and serves one
blob over the peer API as a node would — the right manifest, chunk frames with the right
`i` and `cid` — except that with `tamper=True` every chunk's bytes have one bit flipped.

A real node can never serve a corrupt chunk (its store verifies every chunk it reads),
so a corrupt source has to be a fake. Give it the key of a node that joined the
community (`join_by_invite` on a Node that never runs), so the nodes route to it.
Replies are signed like a node's; requests are not verified (the tests only send it
what the nodes under test ask). It records which chunks each `file.read` asked for.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, b64encode, hash_bytes
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.gateway.http import signed_json_response
from hearthnet.identity import keys as idkeys
from hearthnet.testing.hostile_peer import HostilePeer, capability
from hearthnet.transport.signing import sign_response
from hearthnet.transport.sse import format_frame

REQUEST_ID = "X-HearthNet-Request-Id"


def tampered(data: bytes) -> bytes:
    """The chunk with the first byte's lowest bit flipped: same size, wrong hash."""
    return bytes([data[0] ^ 1]) + data[1:]


class FakeHolder(HostilePeer):
    def __init__(self, root: Path, community_id: str, kp: idkeys.KeyPair, blob: bytes, *,
                 filename: str = "blob.bin", tamper: bool = True, chunk_delay: float = 0.0) -> None:
        super().__init__(root, community_id, [capability("file.read", 8), capability("file.list", 4)], kp=kp)
        self.pieces = [blob[i:i + CHUNK_SIZE_BYTES] for i in range(0, len(blob), CHUNK_SIZE_BYTES)] or [b""]
        self.blob_manifest = BlobManifest.build([hash_bytes(p) for p in self.pieces], len(blob), filename=filename)
        self.tamper, self.chunk_delay = tamper, chunk_delay
        self.reads: list[list[int]] = []  # the chunk indexes each file.read asked for ([] = manifest only)
        self.served: list[int] = []  # the chunk frames actually written

    @property
    def cid(self) -> str:
        return self.blob_manifest.cid

    def chunks_asked(self) -> list[int]:
        return [i for asked in self.reads for i in asked]

    async def _any(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/bus/v1/call":
            self.requests.append((request.method, request.path))
            return await self._call(request)
        return await super()._any(request)

    async def _call(self, request: web.Request) -> web.StreamResponse:
        rid = request.headers.get(REQUEST_ID, "")
        cap = request.headers.get("X-HearthNet-Capability", "")
        inp = (json.loads(await request.read() or b"{}") or {}).get("input") or {}
        if cap == "file.list":
            entry = {"cid": self.cid, "size_bytes": self.blob_manifest.size_bytes,
                     "filename": self.blob_manifest.filename}
            return signed_json_response(self.kp, rid, 200, {"output": {"cids": [self.cid], "entries": [entry]},
                                                            "meta": {}})
        if cap != "file.read" or inp.get("cid") != self.cid:
            return signed_json_response(self.kp, rid, 404, {"error": "not_found", "message": "not here"})
        asked = inp.get("chunks")
        wanted = list(range(len(self.pieces))) if asked is None else [int(i) for i in asked]
        self.reads.append(wanted)
        return await self._read_stream(request, rid, wanted)

    async def _read_stream(self, request: web.Request, rid: str, wanted: list[int]) -> web.StreamResponse:
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                   **sign_response(self.kp, rid, 200, None)}
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        await resp.write(format_frame("manifest", self.blob_manifest.to_wire()))
        for i in wanted:
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            data = self.pieces[i]
            body = tampered(data) if self.tamper else data
            await resp.write(format_frame("chunk", {"i": i, "cid": self.blob_manifest.chunks[i],
                                                    "size_bytes": len(data), "data_b64": b64encode(body)}))
            self.served.append(i)
        await resp.write(format_frame("done", {"chunks": len(wanted), "ms": 1}))
        await resp.write_eof()
        return resp
