"""The payload codec: each payload Temporal would store (workflow and activity inputs, results,
signals, queries and their answers, failure messages) is encrypted whole with AES-256-GCM under
the keyring's first key; the key id travels in the payload's metadata, so any listed key
decrypts and a retired one is named when it is missing. Payloads that were never encrypted (a
history from before the codec) decode as they are."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from leadflow.codec.keys import Keyring

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE = 12


class CodecError(ValueError):
    """A payload that cannot be decrypted with the keys at hand."""


class AesGcmCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys}
        self._current = keyring.current[0]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE)
        # the key id is bound to the ciphertext as associated data: a payload relabelled with
        # another key's id fails to decrypt instead of decrypting under the wrong name
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(),
                                                      self._current.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._current.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(f"a payload is encrypted with key {key_id!r}, which the codec keys do not "
                             "hold (LEADFLOW_CODEC_KEYS lists the keys that decrypt)")
        try:
            plain = cipher.decrypt(payload.data[:NONCE], payload.data[NONCE:], key_id.encode())
        except InvalidTag:
            raise CodecError(f"a payload under key {key_id!r} does not decrypt: damaged, or another "
                             "key with that id") from None
        return Payload.FromString(plain)


def data_converter(keyring: Keyring) -> DataConverter:
    """leadflow's converter (pydantic models as JSON) with every payload and failure encrypted."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=AesGcmCodec(keyring),
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
