#!/usr/bin/env python3
"""Reads {"values": [...], "keys": [{"keytype","scheme","keyval"}],
"paths": [[target, pattern]], "bins": [[bit_length, target]]} as JSON on
stdin and prints, one per line: securesystemslib's canonical encoding of
each value as hex; the key ID securesystemslib gives each key when it
loads the key's public part itself (SSlibKey.from_crypto); 1 or 0 for
whether python-tuf's delegation matches each target against each path
pattern; the succinct bin python-tuf puts each target in."""

import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import DelegatedRole, SuccinctRoles

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
for target, pattern in doc["paths"]:
    role = DelegatedRole("r", [], 1, False, paths=[pattern])
    print(1 if role.is_delegated_path(target) else 0)
for bit_length, target in doc["bins"]:
    print(SuccinctRoles([], 1, bit_length, "bin").get_role_for_target(target))
