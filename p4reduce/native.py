"""Build and load the project's C code: compiled once by the system C compiler, cached.

The switch's native backend and the worker's packet engine are C that we generate or
write; both load it through `load()`. The shared object is compiled with the system C
compiler (`$CC`, else `cc`) as a plain shared library and opened with cffi in ABI mode,
so no Python headers are needed and cffi releases the GIL around every call.

Objects are cached under the user's cache directory (`$P4REDUCE_CACHE`, else
`$XDG_CACHE_HOME/p4reduce`, else `~/.cache/p4reduce`), in `native/`, named by a hash of
the C source, the declarations, the flags, the compiler's identity and `ABI_VERSION`: the
same code is compiled once per machine, and any change to any of these compiles anew.
Writes are atomic (compile to a temporary name, then rename), so concurrent processes
never see half an object.

Where no compiler is found or compilation fails, `load` raises `NativeUnavailable` with
a one-line reason; every caller keeps a Python path and falls back to it (saying so once).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: bump when the way objects are built changes (flags, naming), to invalidate caches
ABI_VERSION = 1
#: flags every object is built with; `sanitize` adds AddressSanitizer (for fuzzing)
BASE_FLAGS = ("-O2", "-g", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wno-unused-function",
              "-Wno-unused-variable", "-Wno-unused-but-set-variable", "-fno-strict-aliasing")
ASAN_FLAGS = ("-fsanitize=address", "-fno-omit-frame-pointer", "-O1")


class NativeUnavailable(RuntimeError):
    """The C path cannot be used here; the message is one line saying why."""


@dataclass(frozen=True)
class Native:
    """A loaded object: `lib` has the functions of `cdef`, `ffi` makes and reads C data."""

    ffi: Any
    lib: Any
    path: Path


def cache_dir() -> Path:
    """Where p4reduce keeps what it builds (native objects, compiled P4)."""
    env = os.environ.get("P4REDUCE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "p4reduce"


def compiler() -> list[str]:
    """The C compiler command ($CC or cc), or NativeUnavailable when there is none."""
    cmd = shlex.split(os.environ.get("CC", "cc"))
    if not cmd or shutil.which(cmd[0]) is None:
        raise NativeUnavailable(f"no C compiler ({cmd[0] if cmd else 'CC is empty'} not found)")
    return cmd


_ident_lock = threading.Lock()
_ident: dict[tuple[str, ...], str] = {}


def _compiler_identity(cmd: list[str]) -> str:
    """`cc --version`'s first line and the resolved path: a new compiler means a new hash."""
    key = tuple(cmd)
    with _ident_lock:
        if key not in _ident:
            try:
                out = subprocess.run([*cmd, "--version"], capture_output=True, text=True,
                                     timeout=30, check=True).stdout
            except (OSError, subprocess.SubprocessError) as e:
                raise NativeUnavailable(f"the C compiler {cmd[0]} does not run: {e}") from e
            _ident[key] = f"{shutil.which(cmd[0])}|{out.splitlines()[0] if out else ''}"
        return _ident[key]


_load_lock = threading.Lock()
_loaded: dict[Path, Native] = {}


def load(name: str, source: str, cdef: str, *, sanitize: bool = False,
         extra_flags: tuple[str, ...] = (), libs: tuple[str, ...] = ()) -> Native:
    """Compile `source` (unless cached) and open it; `cdef` declares what Python calls.

    `name` is a readable prefix of the file name. Raises NativeUnavailable on any failure,
    with the compiler's first error line in the message.
    """
    import cffi  # imported here: the pure-Python paths never need it

    cmd = compiler()
    flags = (*BASE_FLAGS, *(ASAN_FLAGS if sanitize else ()), *extra_flags)
    h = hashlib.sha256()
    for part in (str(ABI_VERSION), _compiler_identity(cmd), " ".join(flags), " ".join(libs),
                 cdef, source):
        h.update(part.encode())
        h.update(b"\0")
    out_dir = cache_dir() / "native"
    path = out_dir / f"{name}-{h.hexdigest()[:20]}{'-asan' if sanitize else ''}.so"
    with _load_lock:
        if path in _loaded:
            return _loaded[path]
        if not path.exists():
            _compile(cmd, flags, libs, source, path)
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        try:
            lib = ffi.dlopen(str(path))
        except OSError as e:
            raise NativeUnavailable(f"cannot open {path.name}: {e}") from e
        native = Native(ffi, lib, path)
        _loaded[path] = native
        return native


def _compile(cmd: list[str], flags: tuple[str, ...], libs: tuple[str, ...], source: str,
             path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NativeUnavailable(f"cannot create the cache directory {path.parent}: {e}") from e
    with tempfile.TemporaryDirectory(prefix="p4reduce-cc-") as tmp:
        src = Path(tmp) / (path.stem + ".c")
        src.write_text(source)
        obj = Path(tmp) / path.name
        argv = [*cmd, *flags, "-o", str(obj), str(src), *(f"-l{lib}" for lib in libs)]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeUnavailable(f"the C compiler failed to run: {e}") from e
        if r.returncode != 0:
            errors = [ln for ln in r.stderr.splitlines() if "error" in ln] or r.stderr.splitlines()
            first = errors[0] if errors else f"exit status {r.returncode}"
            raise NativeUnavailable(f"compiling {path.stem} failed: {first}")
        # rename within the cache directory is atomic: never a half-written object
        staged = None
        try:
            fd, staged = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".so")
            os.close(fd)
            shutil.copyfile(obj, staged)
            os.replace(staged, path)
        except OSError as e:  # a full disk or a read-only cache: the caller falls back
            if staged is not None:
                with contextlib.suppress(OSError):
                    os.unlink(staged)
            raise NativeUnavailable(f"cannot write {path.name} into {path.parent}: {e}") from e
