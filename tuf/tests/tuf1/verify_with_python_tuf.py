#!/usr/bin/env python3
"""Verifies a repository written by seal-tuf with python-tuf 7.0.1's own
client state machine (TrustedMetadataSet) and Metadata.verify_delegate.

Usage: python verify_with_python_tuf.py DIR TARGET_PATH EXPECTED_ROLE
Prints "ok <role>" when the target is found in the expected role.
"""

import json
import os
import sys

from tuf.api.metadata import Metadata
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType


def read(d: str, name: str) -> bytes:
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def main(d: str, target_path: str, expected_role: str) -> None:
    root1 = Metadata.from_bytes(read(d, "1.root.json"))
    root2 = Metadata.from_bytes(read(d, "2.root.json"))
    root1.verify_delegate("root", root2)
    root2.verify_delegate("root", root2)

    tms = TrustedMetadataSet(read(d, "1.root.json"), EnvelopeType.METADATA)
    tms.update_root(read(d, "2.root.json"))
    tms.update_timestamp(read(d, "timestamp.json"))
    tms.update_snapshot(read(d, "snapshot.json"))
    tms.update_targets(read(d, "targets.json"))

    # Pre-order search as python-tuf's Updater does it.
    stack = [("targets", "root")]
    visited = set()
    while stack:
        role, parent = stack.pop()
        if role in visited:
            continue
        if not tms.contains(role, parent):
            tms.update_delegated_targets(read(d, f"{role}.json"), role, parent)
        targets = tms[role]
        if target_path in targets.targets:
            if role != expected_role:
                raise SystemExit(f"found in {role}, expected {expected_role}")
            print(f"ok {role} {json.dumps(targets.targets[target_path].custom)}")
            return
        visited.add(role)
        if targets.delegations is not None:
            children = []
            for child, terminating in targets.delegations.get_roles_for_target(target_path):
                children.append((child, role))
                if terminating:
                    stack = []
                    break
            stack.extend(reversed(children))
    raise SystemExit(f"{target_path} not found")


if __name__ == "__main__":
    main(*sys.argv[1:4])
