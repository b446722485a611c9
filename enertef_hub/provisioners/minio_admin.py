"""A MinIO admin client whose ``user_add`` costs milliseconds instead of ~150 ms.

MinIO's admin API encrypts request bodies that carry secrets (madmin's
``EncryptData``). minio-py always derives that key with Argon2id (64 MiB, ~90 ms of
CPU here, plus as much again on the server to decrypt). madmin defines a second,
equally supported format for FIPS deployments: PBKDF2-SHA256 (8192 rounds) with
AES-256-GCM, AEAD id ``0x02``, which the server's ``DecryptData`` accepts. Using it
makes first-time provisioning several times faster without weakening anything
that matters here: the key protects a request on its way to MinIO, and the
password it is derived from is the MinIO admin's secret key.

The framing is madmin's (sio DARE): ``salt(32) | id(1) | nonce(8)`` then 16 KiB
chunks each sealed with AES-GCM and a 16-byte tag.
"""

from __future__ import annotations

import hashlib
import json
import os

from Crypto.Cipher import AES
from minio import MinioAdmin
from minio.crypto import decrypt
from minio.minioadmin import _COMMAND

_PBKDF2_AES_GCM = 0x02
_PBKDF2_ROUNDS = 8192  # madmin's pbkdf2Cost
_CHUNK = 16 * 1024


def encrypt_admin_payload(payload: bytes, password: str) -> bytes:
    """Encrypt ``payload`` in madmin's PBKDF2 + AES-GCM format (what ``DecryptData`` reads)."""
    salt = os.urandom(32)
    nonce = os.urandom(8)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ROUNDS, 32)
    # sio's associated data: 0x00 || tag of an empty message under nonce||0; the
    # first byte becomes 0x80 on the final chunk.
    associated = b"\x00" + AES.new(key, AES.MODE_GCM, nonce + b"\x00" * 4).digest()
    out = bytearray(salt + bytes([_PBKDF2_AES_GCM]) + nonce)
    starts = list(range(0, len(payload), _CHUNK)) or [0]
    for number, start in enumerate(starts, start=1):
        if start == starts[-1]:
            associated = b"\x80" + associated[1:]
        cipher = AES.new(key, AES.MODE_GCM, nonce + number.to_bytes(4, "little"))
        cipher.update(associated)
        data, tag = cipher.encrypt_and_digest(payload[start:start + _CHUNK])
        out += data + tag
    return bytes(out)


class _Command:
    """An admin API path minio-py has no ``_COMMAND`` member for."""

    def __init__(self, value: str):
        self.value = value


class FastMinioAdmin(MinioAdmin):
    """MinioAdmin with ``user_add`` using madmin's PBKDF2 payload format, and a bulk key listing."""

    def revoke_sts(self, access_key: str) -> None:
        """End every STS credential made from ``access_key`` (madmin ``RevokeTokens``, full revoke).

        Removing or re-creating the user does not do it: MinIO keeps STS credentials
        in a map of their own, and they work again as soon as a user of that name exists.
        """
        self._url_open(
            method="POST",
            command=_Command("revoke-tokens/builtin"),
            query_params={"user": access_key, "fullRevoke": "true"},
        )

    def list_access_keys(self) -> dict:
        """Every user's service accounts and STS credentials, in one call (madmin ``ListAccessKeysBulk``).

        Returns ``{user: {"serviceAccounts": [{"accessKey": ...}], "stsKeys": [...]}}``.
        """
        response = self._url_open(
            method="GET",
            command=_Command("list-access-keys-bulk"),
            query_params={"all": "true", "listType": "all"},
            preload_content=False,
        )
        return json.loads(decrypt(response, self._provider.retrieve().secret_key) or b"{}")

    def user_add(self, access_key: str, secret_key: str) -> str:
        body = json.dumps({"status": "enabled", "secretKey": secret_key}).encode()
        response = self._url_open(
            method="PUT",
            command=_COMMAND.ADD_USER,
            query_params={"accessKey": access_key},
            body=encrypt_admin_payload(body, self._provider.retrieve().secret_key),
        )
        return response.data.decode()
