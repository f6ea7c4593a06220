#!/usr/bin/env python3
"""Builds the python-tuf-made repository in tuf/tests/fixtures/tuf1/.

Regenerate (versions pinned; output changes each run because ECDSA and
RSA signatures and the RSA key are random):

    python3 -m venv /var/tmp/tuf-venv
    /var/tmp/tuf-venv/bin/pip install tuf==7.0.1 'securesystemslib[crypto]==1.6.0'
    /var/tmp/tuf-venv/bin/python tuf/tests/tuf1/make_fixtures.py tuf/tests/fixtures/tuf1

The repository: root v1 -> v2 (root key and timestamp key rotated, an
unrecognised field added); targets delegating `releases/*` to an RSA-PSS
key (terminating) and `hashed/*` to an ECDSA P-384 key whose role delegates
through TAP 15 succinct hash bins; Ed25519 and ECDSA P-256 keys elsewhere; a target whose
`custom` holds U+2028 and a quote, to pin the canonical JSON escaping.
"""

import os
import sys
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

EXPIRES = datetime(2099, 1, 1, tzinfo=timezone.utc)


def ed_signer(seed: int) -> CryptoSigner:
    priv = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return CryptoSigner(priv)


def ec_signer(secret: int) -> CryptoSigner:
    return CryptoSigner(ec.derive_private_key(secret, ec.SECP256R1()))


def main(out: str) -> None:
    os.makedirs(os.path.join(out, "targets", "hashed"), exist_ok=True)
    os.makedirs(os.path.join(out, "targets", "releases"), exist_ok=True)
    ser = JSONSerializer(compact=False)

    root_a = ed_signer(1)  # root v1
    root_b = ec_signer(0xB0B)  # root v2
    ts_1 = ec_signer(0x7157)  # timestamp in root v1
    ts_2 = ed_signer(2)  # timestamp in root v2
    snap = ed_signer(3)
    targ = ec_signer(0x7A76)
    rel = CryptoSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    hashed = CryptoSigner(ec.derive_private_key(0x4A5, ec.SECP384R1()))  # ecdsa-sha2-nistp384
    bins = ec_signer(0xB125)

    # Root v1, then v2 signed by both v1's and v2's root keys.
    root = Metadata(Root(expires=EXPIRES, consistent_snapshot=True))
    for role, s in [("root", root_a), ("timestamp", ts_1), ("snapshot", snap), ("targets", targ)]:
        root.signed.add_key(s.public_key, role)
    root.sign(root_a)
    root.to_file(os.path.join(out, "1.root.json"), ser)

    root.signed.version = 2
    root.signed.add_key(root_b.public_key, "root")
    root.signed.revoke_key(root_a.public_key.keyid, "root")
    root.signed.add_key(ts_2.public_key, "timestamp")
    root.signed.revoke_key(ts_1.public_key.keyid, "timestamp")
    root.signed.unrecognized_fields["x-seal-note"] = "rotated root and timestamp keys"
    root.sign(root_a)
    root.sign(root_b, append=True)
    root.to_file(os.path.join(out, "2.root.json"), ser)

    files = {
        "files/hello.txt": b"hello, tuf\n",
        "releases/app-1.0.tgz": b"not really a tarball\n",
        "hashed/pkg-1.0.tar.gz": b"hashed bin target\n",
    }
    for path, data in files.items():
        if not path.startswith("files/"):
            with open(os.path.join(out, "targets", path), "wb") as f:
                f.write(data)

    # Top-level targets: one target, two delegations.
    hello = TargetFile.from_data("files/hello.txt", files["files/hello.txt"], ["sha256", "sha512"])
    hello.unrecognized_fields["custom"] = {"note": "line\u2028sep \"quoted\" \\ é"}
    targets = Metadata(Targets(expires=EXPIRES, targets={"files/hello.txt": hello}))
    targets.signed.delegations = Delegations(
        keys={rel.public_key.keyid: rel.public_key, hashed.public_key.keyid: hashed.public_key},
        roles={
            "releases": DelegatedRole("releases", [rel.public_key.keyid], 1, True, paths=["releases/*.tgz"]),
            "hashed": DelegatedRole("hashed", [hashed.public_key.keyid], 1, False, paths=["hashed/*"]),
        },
    )
    targets.sign(targ)

    releases = Metadata(Targets(expires=EXPIRES))
    releases.signed.targets["releases/app-1.0.tgz"] = TargetFile.from_data(
        "releases/app-1.0.tgz", files["releases/app-1.0.tgz"]
    )
    releases.sign(rel)

    succinct = SuccinctRoles([bins.public_key.keyid], 1, 2, "hashed-bin")
    hashed_md = Metadata(Targets(expires=EXPIRES))
    hashed_md.signed.delegations = Delegations(
        keys={bins.public_key.keyid: bins.public_key}, succinct_roles=succinct
    )
    hashed_md.sign(hashed)

    bin_mds = {}
    for name in succinct.get_roles():
        bin_mds[name] = Metadata(Targets(expires=EXPIRES))
    pkg = "hashed/pkg-1.0.tar.gz"
    bin_mds[succinct.get_role_for_target(pkg)].signed.targets[pkg] = TargetFile.from_data(pkg, files[pkg])

    role_files = {"targets": targets, "releases": releases, "hashed": hashed_md, **bin_mds}
    meta = {}
    for name, md in role_files.items():
        md.signed.version = 1
        if name != "targets":
            md.sign(rel if name == "releases" else hashed if name == "hashed" else bins)
        data = md.to_bytes(ser)
        with open(os.path.join(out, f"{name}.json"), "wb") as f:
            f.write(data)
        # Length and hashes for the top-level targets only: the others
        # are listed by version alone, as python-tuf does by default.
        meta[f"{name}.json"] = MetaFile.from_data(1, data, ["sha256"]) if name == "targets" else MetaFile(1)

    snapshot = Metadata(Snapshot(expires=EXPIRES, meta=meta))
    snapshot.sign(snap)
    snap_bytes = snapshot.to_bytes(ser)
    with open(os.path.join(out, "snapshot.json"), "wb") as f:
        f.write(snap_bytes)

    timestamp = Metadata(Timestamp(expires=EXPIRES, snapshot_meta=MetaFile.from_data(1, snap_bytes, ["sha256"])))
    timestamp.sign(ts_2)
    timestamp.to_file(os.path.join(out, "timestamp.json"), ser)

    # A timestamp signed with root v1's (since rotated) timestamp key.
    old_ts = Metadata(Timestamp(expires=EXPIRES, snapshot_meta=MetaFile(1)))
    old_ts.signed.version = 7
    old_ts.signed.snapshot_meta = MetaFile(5)
    old_ts.sign(ts_1)
    old_ts.to_file(os.path.join(out, "timestamp-v1-key.json"), ser)

    # The hash bin the package lands in, for the Rust test to check.
    with open(os.path.join(out, "expected-bin.txt"), "w") as f:
        f.write(succinct.get_role_for_target(pkg) + "\n")

    for dirpath, _, names in os.walk(out):
        for name in names:
            os.chmod(os.path.join(dirpath, name), 0o644)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "tuf1"))
