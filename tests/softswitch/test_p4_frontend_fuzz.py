"""Robustness: mutated programs (tokens dropped, duplicated, swapped) either compile or
fail with a CompileError, never another exception. Seeded, so a failure reproduces."""

from __future__ import annotations

import random

import pytest

from p4reduce.softswitch.p4 import CompileError, compile_source
from tests.paths import P4_CORPUS

GOOD = sorted((P4_CORPUS / "good").glob("*.p4"))


def mutate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        r = rng.random()
        if r < 0.4:
            del words[i]
        elif r < 0.7:
            words.insert(i, rng.choice(words))
        else:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return " ".join(words)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(4))
def test_mutations_never_crash(seed: int) -> None:
    rng = random.Random(seed)
    errors = 0
    for _ in range(60):
        src = mutate(rng, rng.choice(GOOD).read_text())
        try:
            compile_source(src, "m.p4")
        except CompileError as e:
            errors += 1
            assert e.diagnostics
            assert str(e).split(":", 1)[0] in ("m.p4", "core.p4", "v1model.p4")
    assert errors > 0  # the mutations do produce broken programs


@pytest.mark.parametrize("blob", [b"\x00" * 64, bytes(range(256)), "é∑\u202e".encode()])
def test_binary_garbage(blob: bytes) -> None:
    with pytest.raises(CompileError):
        compile_source(blob.decode("latin-1"), "g.p4")
