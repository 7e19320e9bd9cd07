"""End-to-end encryption of chat bodies (issue 9): a NaCl box per message.

Both ends' X25519 keys are their Ed25519 device keys converted (libsodium's
crypto_sign_ed25519_{pk,sk}_to_curve25519, through PyNaCl), so a node id is all a sender
needs to know about its recipient. The box key of (A, B) is the same from both sides, so
the sender reads its own sent messages with its secret key and the recipient's public
key. Every message gets a fresh random 24-byte nonce (XSalsa20-Poly1305: authenticated,
so a flipped bit anywhere fails the whole message rather than changing it).

Wire form in the signed `chat.message.sent` event: `body` = base64 of nonce + ciphertext,
`attachments` = [] (the real list is inside the ciphertext), `enc` = ENC_SCHEME. The
plaintext is the canonical JSON {attachments: [{cid, name}], body}.

The derived X25519 secret and the per-peer boxes live only in this object's memory; they
are never written anywhere, so removing the device key (`hearthnet erase`) removes every
means to read the messages.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import VerifyKey

from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, parse_node_id

ENC_SCHEME = "x25519-xsalsa20-poly1305"
MAX_BOXES = 4096  # peers whose shared key we keep; a community is far smaller


class Undecryptable(Exception):
    """Not for us, corrupt, or not a chat plaintext."""


def x25519_public(node_id: str) -> PublicKey:
    """The X25519 public key of a full node id (IdentityError for a malformed id;
    libsodium refuses a point that is not on the curve with CryptoError)."""
    return VerifyKey(parse_node_id(node_id)).to_curve25519_public_key()


class ChatCrypto:
    def __init__(self, kp: KeyPair) -> None:
        self.node_id = kp.node_id_full
        self._secret: PrivateKey = kp.signing_key.to_curve25519_private_key()
        self._boxes: dict[str, Box] = {}

    def _box(self, peer: str) -> Box:
        box = self._boxes.get(peer)
        if box is None:
            if len(self._boxes) >= MAX_BOXES:
                self._boxes.clear()
            box = self._boxes[peer] = Box(self._secret, x25519_public(peer))
        return box

    def encrypt(self, recipient: str, body: str, attachments: list[dict[str, str]]) -> str:
        """The base64 `body` of a `chat.message.sent` to `recipient`."""
        plain = canonical_json({"attachments": attachments, "body": body})
        return base64.b64encode(bytes(self._box(recipient).encrypt(plain))).decode("ascii")

    def decrypt(self, event: dict[str, Any]) -> dict[str, Any]:
        """{body, attachments} of an encrypted `chat.message.sent` we sent or received;
        Undecryptable for anything else (never another exception)."""
        data = event.get("data")
        author = event.get("author")
        if not isinstance(data, dict) or data.get("enc") != ENC_SCHEME:
            raise Undecryptable("not an encrypted message")
        recipient = data.get("recipient")
        if author == self.node_id:
            peer = recipient
        elif recipient == self.node_id:
            peer = author
        else:
            raise Undecryptable("not a message of ours")
        try:
            raw = base64.b64decode(data.get("body", ""), validate=True)
            plain = json.loads(self._box(str(peer)).decrypt(raw))
        except Exception as exc:  # noqa: BLE001
            # anything a hostile or broken ciphertext can make PyNaCl or json raise
            raise Undecryptable(type(exc).__name__) from None
        return _plaintext(plain)


def _plaintext(plain: Any) -> dict[str, Any]:
    if not isinstance(plain, dict) or not isinstance(plain.get("body"), str):
        raise Undecryptable("plaintext is not a chat message")
    atts = plain.get("attachments")
    if not isinstance(atts, list):
        raise Undecryptable("plaintext attachments are not a list")
    clean = [{"cid": a["cid"], "name": a["name"]} for a in atts
             if isinstance(a, dict) and isinstance(a.get("cid"), str) and isinstance(a.get("name"), str)]
    return {"body": plain["body"], "attachments": clean}
