#!/usr/bin/env python3
"""Runs python-tuf 7.0.1's TrustedMetadataSet through the steps in
DIR/steps.json ([[op, file, role?, delegator?], ...]) and prints "ok" or
the class name of the exception that stopped it.

ops: init (trusted root), root, timestamp, snapshot, snapshot_cached
(a locally cached snapshot: trusted=True, its failure ignored as the
Updater ignores it), targets, delegated.
"""

import json
import os
import sys

from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType


def main(d: str) -> None:
    with open(os.path.join(d, "steps.json")) as f:
        steps = json.load(f)
    tms = None
    try:
        for op, name, *rest in steps:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            if op == "init":
                tms = TrustedMetadataSet(data, EnvelopeType.METADATA)
            elif op == "root":
                tms.update_root(data)
            elif op == "timestamp":
                tms.update_timestamp(data)
            elif op == "snapshot":
                tms.update_snapshot(data)
            elif op == "snapshot_cached":
                try:
                    tms.update_snapshot(data, trusted=True)
                except Exception:
                    pass
            elif op == "targets":
                tms.update_targets(data)
            elif op == "delegated":
                tms.update_delegated_targets(data, rest[0], rest[1])
            else:
                raise SystemExit(f"unknown op {op}")
    except Exception as e:
        print(type(e).__name__)
        return
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
