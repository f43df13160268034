"""Every file cvtune writes goes through here: one output policy, atomic writes, locks, and clean temporaries.

- `check_output(path, force=...)`: the `-o` policy. A folder, a read-only place, an input file, a wrong suffix or
  an existing file (without `--force`) is refused with one line before any work starts.
- `atomic_path` / `atomic_files` / `atomic_dir`: write to hidden temporaries beside the target, then rename. The
  target appears whole or not at all; a model and its sidecar JSON are committed together (the sidecar first, so
  a model never exists without it). Permissions follow the umask (a replaced file keeps its mode), not mkstemp's
  0600. A full disk or a read-only folder is one line naming the output, not the input.
- Temporaries carry the writer's pid (`.NAME.cvtune-PID-XXXX`, `$TMPDIR/cvtune-PID-*`); those of dead processes
  (SIGKILL) are removed by the next cvtune that writes in the same folder. A live process's files are never touched,
  so two cvtune commands never disturb each other.
- `output_lock`: one writer per output; the second gets one line saying who holds it (pid, command, since when).
  The lock is an flock, so the lock of a process that died is free again and simply taken over.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError, UsageError

__all__ = ["atomic_dir", "atomic_files", "atomic_path", "check_output", "check_unlocked", "copy_model",
           "display_path", "is_temporary", "is_utf8_path", "json_document", "model_files", "model_present",
           "output_lock", "path_or_bytes", "read_bytes", "refuse_overwrite_of_input", "schema_id", "sweep_leftovers",
           "temp_dir", "use_process_temp_root", "write_json", "write_text"]

TEMP_TAG = ".cvtune-"  # hidden temporaries: .NAME.cvtune-PID-XXXX[.suffix]
_LEFTOVER = re.compile(r"^\..+\.cvtune-(\d+)-[A-Za-z0-9_]+(\.[^/]*)?$")
_TEMP_ROOT = re.compile(r"^cvtune-(\d+)-")
LOCK_NAME = ".cvtune.lock"  # inside an output folder; a file output's lock is .NAME.cvtune.lock beside it

# The command line of this process, for lock holders' messages (set by cli.run_cli).
current_command = "cvtune"

# Versions of the JSON documents cvtune writes (`schema` field: cvtune-NAME/N). Bump N when a field changes
# meaning or disappears; adding a field keeps N.
SCHEMA_VERSIONS = {"deploy": 1, "prune": 1, "quant": 1, "sensitivity": 1, "candidate": 1, "result": 1,
                   # --json outputs of the commands (objects; lists such as several bench rows stay lists)
                   "bench": 1, "dataset": 1, "devices": 1, "eval": 1, "inspect": 1, "optimize": 1, "prepare": 1,
                   "report": 1, "run": 1, "synth": 1, "zoo": 1}


# ---------------------------------------------------------------------------------------------- paths


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes that are not UTF-8 (a folder named b'\\xff') shown as \\xff escapes."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8_path(path: str | os.PathLike[str]) -> bool:
    """False for a path holding bytes that are not UTF-8; C++ libraries (OpenCV) cannot take those as text."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_or_bytes(path: str | os.PathLike[str]) -> str | bytes:
    """For libraries that take a path or the file's bytes (ONNX Runtime): the path as text when it is UTF-8 (so
    external data next to the model is found), else the bytes, read by Python."""
    return os.fsdecode(path) if is_utf8_path(path) else read_bytes(path, what="model")


def read_bytes(path: str | os.PathLike[str], *, what: str = "file") -> bytes:
    """The file's bytes, read by Python (which handles any path), for libraries that take buffers."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OutputError(f"cannot read {what} {display_path(path)}: {exc.strerror or exc}") from None


def refuse_overwrite_of_input(output: str | os.PathLike[str], *inputs: str | os.PathLike[str] | None) -> None:
    """Raise if `output` would replace one of the user's input files."""
    out = Path(output).resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == out:
            raise UsageError(f"output {display_path(output)} is the same file as the input; choose another -o path")


def _writable_folder(folder: Path, output: Path) -> None:
    """The nearest existing ancestor of `folder` must be a folder we can create files in."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"cannot write {display_path(output)}: {display_path(probe)} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {display_path(output)}: folder {display_path(probe)} is read-only or not "
                          f"writable by you; choose another -o")
    try:  # access() trusts mode bits (root passes them all): make sure, with an empty folder made and removed
        os.rmdir(tempfile.mkdtemp(prefix=_temp_name(output), dir=probe))
    except OSError as exc:
        raise _output_error(exc, output) from None


def check_output(path: str | os.PathLike[str], *, force: bool = False, inputs: Iterable[Any] = (),
                 suffixes: tuple[str, ...] | None = None, companions: Iterable[str | os.PathLike[str]] = (),
                 option: str = "-o", force_hint: str = "--force") -> Path:
    """The `-o` policy for a file output, checked before any work: not a folder, not an input, the right suffix,
    a writable folder, and no existing file (or companion such as OUT.prune.json) unless `force`. `option` and
    `force_hint` name the parameters in messages (the CLI's flags by default; the Python API passes its own)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {display_path(path)} is a folder; give a file path"
                         + (f" ending in {' or '.join(suffixes)}" if suffixes else ""))
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {display_path(path)} must end in {' or '.join(suffixes)}")
    companions = [Path(c) for c in companions]
    for target in (path, *companions):
        refuse_overwrite_of_input(target, *inputs)
        if target.is_dir():
            raise UsageError(f"{display_path(target)} (written with {option} {display_path(path)}) is a folder; "
                             f"move it away or choose another {option}")
    _writable_folder(path.parent, path)
    if not force:
        existing = [t for t in (path, *companions) if t.exists() or t.is_symlink()]
        if existing:
            raise UsageError(f"{display_path(existing[0])} exists; pass {force_hint} to replace it, or choose "
                             f"another {option}")
    return path


# ---------------------------------------------------------------------------------------------- permissions


def _read_umask() -> int:
    """The process umask, read without changing it where the OS allows (/proc), else with the umask() swap."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path, *, folder: bool = False) -> int:
    """What a fresh file (0666) or folder (0777) gets under the umask; a file being replaced keeps its mode."""
    with contextlib.suppress(OSError):
        if target.exists() and target.is_dir() == folder:
            return target.stat().st_mode & 0o7777
    return (0o777 if folder else 0o666) & ~_read_umask()


# ---------------------------------------------------------------------------------------------- errors


def _output_error(exc: OSError, target: Path) -> OutputError:
    """One line for an OSError met while writing `target`, naming the output and its folder."""
    where = display_path(target)
    folder = display_path(target.parent if str(target.parent) else Path("."))
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return OutputError(f"no space left on the device of {folder} while writing {where}; free some space or "
                           f"choose another -o (nothing was written)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {where}: {folder} is read-only or not writable by you; choose another -o")
    if exc.errno == errno.ENAMETOOLONG:
        return OutputError(f"cannot write {where}: the file name is too long for this file system")
    return OutputError(f"cannot write {where}: {exc.strerror or exc}")


def _check_space(folder: Path, target: Path, size_hint: int | None) -> None:
    if not size_hint:
        return
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(folder).free
        if free < size_hint:
            raise OutputError(f"not enough space to write {display_path(target)}: it needs about "
                              f"{size_hint / 1e6:,.1f} MB and {display_path(folder)} has {free / 1e6:,.1f} MB free; "
                              f"free some space or choose another -o")


# ---------------------------------------------------------------------------------------------- leftovers


def is_temporary(name: str) -> bool:
    """True for the name of a temporary cvtune writes before renaming it into place (.NAME.cvtune-PID-XXXX)."""
    return bool(_LEFTOVER.match(name))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        return False
    return True


OWNER = ".cvtune-owner"  # inside a scratch folder: flock-ed by its process for as long as it lives


def _flock(fd: int, *, block: bool = False) -> bool:
    """Take an exclusive flock on `fd`; False when another process holds it (True where flock does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the pid check alone decides
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _held(path: Path) -> bool:
    """True when a live process holds the flock of a temporary (a file: itself; a folder: its owner file). The pid
    in a name can look dead from another pid namespace (a container sharing /tmp): the flock cannot."""
    lock = path / OWNER if path.is_dir() and not path.is_symlink() else path
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        return not _flock(fd)
    finally:
        os.close(fd)


def sweep_leftovers(folder: str | os.PathLike[str], *, pattern: re.Pattern[str] = _LEFTOVER) -> int:
    """Remove the temporaries a killed cvtune left in `folder`: only ours (our uid, our naming), only when the
    process named in them is gone and nobody holds their lock. Returns how many were removed. Never raises."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        try:
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        if not _held(Path(entry.path)):
            removed += _remove(Path(entry.path))
    return removed


def _temp_name(target: Path) -> str:
    return f".{target.name[:100]}{TEMP_TAG}{os.getpid()}-"


def _owned_dir(base: Path, prefix: str) -> tuple[Path, int]:
    """A new folder in `base` named PREFIX-XXXX with an owner file this process holds the flock of."""
    sweep_leftovers(base, pattern=_TEMP_ROOT)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    fd = os.open(path / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    _flock(fd, block=True)
    return path, fd


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A private scratch folder `$TMPDIR/cvtune-PID-PREFIX-XXXX`, removed on exit; a killed process's folder is
    removed by the next cvtune (see sweep_leftovers). Never shared between processes."""
    path, fd = _owned_dir(Path(tempfile.gettempdir()), f"cvtune-{os.getpid()}-{prefix}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


_process_root: Path | None = None


def use_process_temp_root() -> Path:
    """Put this process's temporary files (cvtune's and the libraries': ORT's quantizer, onnx) in one private
    folder `$TMPDIR/cvtune-PID-XXXX`, removed at exit; roots of dead processes are removed first. The CLI calls it."""
    global _process_root
    if _process_root is None:
        import atexit

        _process_root, fd = _owned_dir(Path(tempfile.gettempdir()), f"cvtune-{os.getpid()}-")
        tempfile.tempdir = str(_process_root)
        atexit.register(os.close, fd)
        atexit.register(shutil.rmtree, _process_root, ignore_errors=True)
    return _process_root


# ---------------------------------------------------------------------------------------------- atomic writes


def _prepare_folder(folder: Path, target: Path) -> Path:
    """Create `folder` (for `target`) if needed and sweep dead writers' temporaries out of it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(exc, target) from None
    sweep_leftovers(folder)
    return folder


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_WRITE_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EACCES, errno.EPERM, errno.EROFS,
                 errno.EFBIG)


def _blame(exc: OSError, temps: list[Path], paths: list[Path]) -> Path | None:
    """The target an OSError raised while writing the temporaries belongs to (None: not a write error of ours)."""
    names = {os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None}
    for tmp, target in zip(temps, paths, strict=False):
        if str(tmp) in names:  # shutil.copyfile names the source first and our temporary second
            return target
    return paths[0] if exc.errno in _WRITE_ERRNOS and (not names or exc.errno in _DISK_FULL) else None


@contextlib.contextmanager
def atomic_files(*targets: str | os.PathLike[str], size_hint: int | None = None,
                 suffix: str | None = None) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path per target (same folder, hidden, pid-tagged). When the block succeeds they are
    renamed into place, companions first and `targets[0]` last, so whenever the primary file exists its companions
    do too; an old primary being replaced is removed first, so it is never paired with a new companion. On any
    failure every temporary is removed and the targets are as they were. `size_hint`: bytes the primary will
    take (checked against the free space first); `suffix`: the primary temporary's suffix (default: the target's)."""
    paths = [Path(t) for t in targets]
    temps: list[Path] = []
    fds: list[int] = []
    try:
        for i, target in enumerate(paths):
            if target.is_dir():
                raise OutputError(f"cannot write {display_path(target)}: it is a folder")
            folder = _prepare_folder(target.parent, target)
            if i == 0:
                _check_space(folder, target, size_hint)
            try:
                fd, tmp = tempfile.mkstemp(prefix=_temp_name(target),
                                           suffix=(suffix if i == 0 and suffix is not None else target.suffix),
                                           dir=folder)
            except OSError as exc:
                raise _output_error(exc, target) from None
            fds.append(fd)  # held (flock) until the end: a sweeper in another pid namespace sees it is alive
            _flock(fd, block=True)
            temps.append(Path(tmp))
        try:
            yield tuple(temps)
        except OSError as exc:  # the block's own writes: a full disk, a read-only folder
            blamed = _blame(exc, temps, paths)
            if blamed is None:
                raise
            raise _output_error(exc, blamed) from None
        try:
            for tmp, target in zip(temps, paths, strict=True):
                os.chmod(tmp, _mode_for(target))
            if len(paths) > 1 and paths[0].exists():
                paths[0].unlink()
            for tmp, target in reversed(list(zip(temps, paths, strict=True))):
                os.replace(tmp, target)
            for folder in {p.parent for p in paths}:
                _fsync_dir(folder)
        except OSError as exc:
            raise _output_error(exc, paths[0]) from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None,
                size_hint: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target`, on error it is removed."""
    with atomic_files(target, size_hint=size_hint, suffix=suffix) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `target`; on success it takes `target`'s place (an existing folder
    there is moved aside first and removed only after the swap), on error it is removed."""
    target = Path(target)
    folder = _prepare_folder(target.parent, target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_name(target), dir=folder))
    except OSError as exc:
        raise _output_error(exc, target) from None
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS:
                raise
            raise _output_error(exc, target) from None
        old = None
        try:
            os.chmod(tmp, _mode_for(target, folder=True))
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=_temp_name(target), dir=folder))
                os.replace(target, old / "previous")
            os.replace(tmp, target)
        except OSError as exc:
            if old is not None and not target.exists() and (old / "previous").exists():
                os.replace(old / "previous", target)  # put the previous output back
            raise _output_error(exc, target) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (undecodable path bytes inside the text are written as \\xff escapes)."""
    data = text.encode("utf-8", "backslashreplace")
    with atomic_path(target, size_hint=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def schema_id(kind: str) -> str:
    """'deploy' -> 'cvtune-deploy/1': the `schema` field of that JSON document."""
    return f"cvtune-{kind}/{SCHEMA_VERSIONS[kind]}"


def json_document(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with `schema` (what it is, and the version of its layout) and `version` (the cvtune that wrote it)
    first, so a reader can check both before anything else."""
    from . import __version__

    rest = {k: v for k, v in obj.items() if k not in ("schema", "version")}
    return {"schema": schema_id(kind), "version": __version__, **rest}


def write_json(target: str | os.PathLike[str], obj: Any, *, schema: str | None = None) -> Path:
    """Write `obj` as indented JSON atomically; with `schema`, tagged by json_document."""
    if schema is not None:
        obj = json_document(schema, obj)
    return write_text(target, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- locks


def _lock_file(target: Path) -> Path:
    return target / LOCK_NAME if target.is_dir() else target.with_name(f".{target.name}{TEMP_TAG[:-1]}.lock")


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on {info.get('host', '?')}, `{info.get('command', 'cvtune')}`, since "
                f"{info.get('since', '?')}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


def check_unlocked(target: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Refuse early (before any work) an output another cvtune holds the lock of; output_lock takes it later."""
    target = Path(target)
    if (target / LOCK_NAME if folder else _lock_file(target)).exists():
        with output_lock(target, folder=folder, probe=True):
            pass


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str], *, folder: bool = False, probe: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on an output (a file, or with `folder` a folder) for the block. A second cvtune
    wanting the same output gets a UsageError saying who holds it; the lock of a dead process is taken over.
    `probe`: only check (the lock file of a free lock is left as it was)."""
    import fcntl

    target = Path(target)
    if folder:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _output_error(exc, target / LOCK_NAME) from None
    lock = target / LOCK_NAME if folder else _lock_file(target)
    if not folder:
        _prepare_folder(lock.parent, target)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_read_umask())
        except OSError as exc:
            raise _output_error(exc, lock) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(f"{display_path(target)} is in use by another cvtune ({_holder(lock)}); wait for it "
                             f"to finish or choose another -o") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder unlinked while we waited for it
            break
        os.close(fd)
    if probe:
        os.close(fd)
        yield lock
        return
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": current_command,
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode("utf-8", "backslashreplace"))
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


# ---------------------------------------------------------------------------------------------- model files

# Files that travel with a model file: an OpenVINO IR's .xml holds the graph, the .bin next to it the weights.
COMPANIONS = {".xml": (".bin",)}


def model_files(path: str | os.PathLike[str]) -> list[Path]:
    """A model file and the files it needs beside it (an OpenVINO IR: .xml, then .bin)."""
    path = Path(path)
    return [path, *(path.with_suffix(s) for s in COMPANIONS.get(path.suffix.lower(), ()))]


def model_present(path: str | os.PathLike[str]) -> bool:
    """Whether a model file is there with every file it needs beside it."""
    return all(p.is_file() for p in model_files(path))


def copy_model(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy a model file and its companions (model_files) to `target` (same suffix), atomically and together:
    the model file is renamed into place last, so it never names weights that are not there."""
    sources, targets = model_files(source), model_files(target)
    if Path(source).suffix.lower() != Path(target).suffix.lower():
        raise UsageError(f"cannot copy {Path(source).name} to {Path(target).name}: the suffixes differ")
    with atomic_files(*targets, size_hint=sum(p.stat().st_size for p in sources)) as temps:
        for src, tmp in zip(sources, temps, strict=True):
            shutil.copyfile(src, tmp)
    return Path(target)


def cache_root() -> Path:
    """cvtune's own cache (converted models, built candidates): $CVTUNE_CACHE, else $XDG_CACHE_HOME/cvtune, else
    ~/.cache/cvtune. Everything in it can be deleted at any time; it is rebuilt on demand."""
    root = os.environ.get("CVTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cvtune")
    return Path(root)
