"""Compare the installed packages with a lock file: which versions differ, which installed packages it does not pin.

    python scripts/lock/diff_lock.py requirements/cpu.lock            # prints the differences, exits 0
    python scripts/lock/diff_lock.py requirements/cpu.lock --strict   # exits 1 if any installed package differs

Only the lock's lines whose environment markers hold here count; a local version label (torch's `+cpu`) is ignored.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

UNLOCKED_TOOLS = {"pip", "setuptools", "wheel", "llava-cit"}  # the installer itself and the project


def locked_versions(lock: Path) -> dict[str, str]:
    pins = {}
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise SystemExit(f"error: {lock}:{number}: not an exact pin: {line}")
        pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def installed_versions() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}


def differences(lock: Path) -> list[str]:
    pins, installed = locked_versions(lock), installed_versions()
    lines = []
    for name in sorted(installed):
        if name in UNLOCKED_TOOLS:
            continue
        have = installed[name]
        if name not in pins:
            lines.append(f"{name}: {have} installed, not in {lock.name}")
        elif Version(have).public != Version(pins[name]).public:
            lines.append(f"{name}: {have} installed, {pins[name]} locked")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lock", type=Path)
    parser.add_argument("--strict", action="store_true", help="exit 1 when any installed package differs from the lock")
    args = parser.parse_args()
    lines = differences(args.lock)
    for line in lines:
        print(line)
    print(f"{len(lines)} package(s) differ from {args.lock}" if lines else f"every installed package matches {args.lock}")
    return 1 if lines and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
