"""What network tests need to know of this machine and what a run left behind.

The Mininet tests skip with `mininet_missing()`'s reason; after a run they check with
`alive`, `interfaces` and `host_shells` that nothing the run created is still there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path


def mininet_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: Mininet creates network namespaces and veth pairs"
    if importlib.util.find_spec("mininet.net") is None:
        return "Mininet is not installed (apt-get install mininet)"
    for tool in ("mnexec", "ethtool", "tc", "ip", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (apt-get install mininet ethtool iproute2)"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if r.returncode != 0:
        return "cannot create a network namespace here (unshare -n failed)"
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def interfaces(tag: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = [ln.split(":", 2)[1].strip().split("@", 1)[0] for ln in out.splitlines()]
    return [n for n in names if re.match(rf"^{re.escape(tag)}[hsmr][0-9]", n)]


def host_shells(tag: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"mininet:{tag}" in cmd:
                found.append(int(d.name))
    return found
