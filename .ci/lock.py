"""Turn `pip lock`'s pylock.toml into constraints.txt: one exact version per package.

Versions only, no URLs or hashes: the same lock then serves PyPI, a CPU wheel index for torch
and a local wheel folder alike. `make lock` runs this; see docs/install.md.
Usage: python .ci/lock.py pylock.toml PIP_VERSION > constraints.txt
"""

from __future__ import annotations

import platform
import sys
import tomllib


def main() -> None:
    lock_path, pip_version = sys.argv[1], sys.argv[2]
    with open(lock_path, "rb") as file:
        packages = tomllib.load(file)["packages"]
    # A local label (torch's "+cpu") names where a wheel came from, not what it is.
    pins = {p["name"]: str(p["version"]).split("+")[0] for p in packages if "version" in p}
    pins.pop("sensorium", None)
    pins["pip"] = pip_version
    print("# The versions `make demo`, `make test` and CI install; refresh with `make lock`.")
    print(
        f"# Resolved on CPython {platform.python_version()}, {sys.platform} {platform.machine()}."
    )
    for name in sorted(pins, key=str.lower):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
