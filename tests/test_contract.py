"""`p4reduce.contract` is the one Python home of the protocol: P4 states the same values.

The P4 side is read from `p4src/config.p4` (its #define lines) and from the compiled
program; a value changed on one side only fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from p4reduce import contract as c
from p4reduce.p4src import P4SRC_DIR


def _p4_defines() -> dict[str, int]:
    """`#define NAME value` lines of config.p4 whose value is a (width-typed) integer."""
    out: dict[str, int] = {}
    for line in (P4SRC_DIR / "config.p4").read_text().splitlines():
        m = re.fullmatch(r"#define (\w+) (?:\d+w)?(0x[0-9a-fA-F]+|\d+)", line.strip())
        if m:
            out[m.group(1)] = int(m.group(2), 0)
    return out


@pytest.mark.parametrize(("p4", "py"), [
    ("NUM_LANES", c.DEFAULT_K),
    ("NUM_SLOTS", c.DEFAULT_SLOT_PAIRS),
    ("MAX_JOBS", c.MAX_JOBS),
    ("MAX_WORKERS", c.MAX_WORKERS),
    ("AGG_UDP_PORT", c.AGG_UDP_PORT),
    ("FLOOD_MCAST_GRP", c.FLOOD_MCAST_GRP),
    ("FLAG_RESULT", c.FLAG_RESULT),
    ("FLAG_EXP_ONLY", c.FLAG_EXP_ONLY),
    ("FLAG_RETRANSMIT", c.FLAG_RETRANSMIT),
    ("REJECT_UNKNOWN_JOB", c.REJECT_UNKNOWN_JOB),
    ("REJECT_BAD_SLOT", c.REJECT_BAD_SLOT),
    ("REJECT_NOT_MEMBER", c.REJECT_NOT_MEMBER),
    ("REJECT_BAD_WORKER", c.REJECT_BAD_WORKER),
    ("REJECT_FORGED_RESULT", c.REJECT_FORGED_RESULT),
    ("NUM_REJECT_REASONS", len(c.REJECT_REASONS)),
])
def test_config_p4_states_the_contract_values(p4: str, py: int) -> None:
    assert _p4_defines()[p4] == py


def test_config_p4_checks_the_contract_k_range() -> None:
    text = (P4SRC_DIR / "config.p4").read_text()
    assert (f"#if NUM_LANES < {c.K_MIN} || NUM_LANES > {c.K_MAX} || NUM_LANES % {c.K_STEP} != 0"
            in text)
    assert c.K_MIN <= c.DEFAULT_K <= c.K_MAX and c.DEFAULT_K % c.K_STEP == 0


def test_reject_reason_codes_index_the_reason_names() -> None:
    codes = [c.REJECT_UNKNOWN_JOB, c.REJECT_BAD_SLOT, c.REJECT_NOT_MEMBER, c.REJECT_BAD_WORKER,
             c.REJECT_FORGED_RESULT]
    assert [c.REJECT_REASONS[i] for i in codes] == [
        "unknown_job", "bad_slot", "not_member", "bad_worker", "forged_result"]


def test_layout_offsets_follow_the_field_order() -> None:
    ends = [c.FIELD_OFFSETS[name] + bits // 8 for name, bits in c.AGG_FIELDS]
    assert ends[-1] == c.AGG_HEADER_LEN == 12
    assert [c.FIELD_OFFSETS[name] for name, _ in c.AGG_FIELDS] == [0, *ends[:-1]]
    assert c.agg_payload_len(64) == 12 + 256


def test_importing_the_contract_loads_nothing_else_of_ours_nor_numpy() -> None:
    code = ("import sys, p4reduce.contract; "
            "print(sorted(m for m in sys.modules if m.startswith(('p4reduce', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "['p4reduce', 'p4reduce.contract']"


def test_no_second_definition_of_a_contract_constant() -> None:
    """Each constant is assigned in one Python file only (others import it)."""
    import p4reduce

    names = sorted(k for k in vars(c) if k.isupper())  # every constant the contract defines
    assert {"AGG_UDP_PORT", "DEFAULT_K", "K_STEP", "MAX_WORKERS", "REJECT_REASONS"} <= set(names)
    roots = [P4SRC_DIR.parent / d for d in ("worker", "controller", "softswitch", "mininet",
                                            "bench", "examples")]
    roots.append(P4SRC_DIR.parent / p4reduce.__name__)
    pattern = re.compile(rf"^\s*({'|'.join(names)})\s*(:[^=]*)?=", re.M)
    where: dict[str, list[str]] = {}
    for root in roots:
        for f in root.rglob("*.py"):
            for m in pattern.finditer(f.read_text()):
                where.setdefault(m.group(1), []).append(str(f.relative_to(P4SRC_DIR.parent)))
    assert {k: v for k, v in where.items() if v != ["p4reduce/contract.py"]} == {}
