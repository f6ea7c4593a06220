#!/usr/bin/env python3
"""Reads {"values": [...], "keys": [{"keytype","scheme","keyval"}]} as JSON
on stdin and prints, one per line, securesystemslib's canonical encoding
of each value as hex, then the key ID securesystemslib gives each key
when it loads the key's public part itself (SSlibKey.from_crypto)."""

import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import SSlibKey

doc = json.load(sys.stdin)
for v in doc["values"]:
    print(encode_canonical(v).encode("utf-8").hex())
for k in doc["keys"]:
    public = k["keyval"]["public"]
    if k["keytype"] == "ed25519":
        crypto = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
    else:
        crypto = load_pem_public_key(public.encode())
    print(SSlibKey.from_crypto(crypto).keyid)
