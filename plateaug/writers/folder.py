"""Guards for a dataset folder written by several runs and processes: the settings record
(`settings.json`: a rerun with other settings is refused instead of mixing two datasets), one
OS-level lock per shard (a second process on the same shard is told so; the kernel drops the lock
when its holder exits or is killed, so a stale lock never blocks a rerun), and the clean-up of temp
files left by killed runs (only for shards nobody holds)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .atomic import atomic_write_text

try:
    import fcntl
except ImportError:  # not POSIX: no locking (concurrent runs of one shard are then not detected)
    fcntl = None

SETTINGS = "settings.json"
SETTINGS_TAG = "settings"  # temp-file tag of settings.json writes
_TMP = re.compile(r"^\..+\.([^.]+)\.tmp$")  # .<name>.<tag>.tmp (see atomic.tmp_path)
_SHARD_TAG = re.compile(r"^shard(\d+)$")


class ShardBusy(RuntimeError):
    """Another process holds the lock of this shard."""


class FolderLock:
    """An exclusive flock on `folder/.<name>.lock`, removed again on release. The lock file holds
    the holder's pid (for the message only; the kernel lock is what counts)."""

    def __init__(self, folder: str | Path, name: str):
        self.path = Path(folder) / f".{name}.lock"
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; False (non-blocking only) when another process holds it."""
        if fcntl is None:
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # the holder before us may have removed the file on release: then our lock is on a
            # file nobody else will open, and a third process could lock a new one. Retry.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.fd = fd
                return True
            os.close(fd)

    def holder(self) -> str:
        """The pid written by the current holder ('?' if unknown)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.fd is None:
            return
        try:  # remove the file while still holding the lock (see acquire)
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def shard_lock(folder: str | Path, tag: str) -> FolderLock:
    """Take the lock of the shard whose temp files carry `tag`; ShardBusy if another process holds it."""
    lock = FolderLock(folder, tag)
    if not lock.acquire(blocking=False):
        raise ShardBusy(f"{tag} of {folder} is being written by another process (pid {lock.holder()}); "
                        f"wait for it to finish, or run another shard")
    return lock


def check_settings(folder: str | Path, settings: dict, compared: dict[str, str], count_key: str = "count",
                   batch_key: str = "batch_size") -> dict | None:
    """Record `settings` in folder/settings.json on the first run; on a rerun compare them with the
    record and raise ValueError naming every setting that differs (old vs new). `compared` maps
    the keys that change the content to the option shown in the message; other keys are kept
    for information. The item count may grow when the recorded count is a multiple of the batch
    size (every existing item keeps its content); the record is then updated. Returns the old
    record (None on the first run)."""
    folder = Path(folder)
    path = folder / SETTINGS
    with FolderLock(folder, "settings"):
        _remove_tmp(folder, SETTINGS_TAG)
        old = None
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(old, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError(f"{path} is unreadable ({e}); it records the settings this folder was written "
                                 f"with. Restore it, or use a new folder") from None
            diffs = []
            for key, option in compared.items():
                if key not in old or key not in settings or old[key] == settings[key]:
                    continue
                if key == count_key and _can_extend(old, settings, count_key, batch_key):
                    continue
                diffs.append(f"{option}: was {_show(old, key)}, now {_show(settings, key)}"
                             + (_count_hint(old, settings, count_key, batch_key) if key == count_key else ""))
            if diffs:
                raise ValueError(f"{folder} was written with other settings, and continuing would mix two "
                                 f"datasets:\n  " + "\n  ".join(diffs) + f"\nRerun with the recorded settings "
                                 f"(see {path}) to resume or extend it, or write to a new --out folder.")
            if old == settings:
                return old
        atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                          SETTINGS_TAG)
        return old


def _can_extend(old: dict, new: dict, count_key: str, batch_key: str) -> bool:
    return (new[count_key] > old[count_key] and old.get(batch_key) == new.get(batch_key)
            and old[count_key] % old[batch_key] == 0)


def _count_hint(old: dict, new: dict, count_key: str, batch_key: str) -> str:
    if new[count_key] < old[count_key]:
        return " (a smaller count would leave the old run's extra items in the folder)"
    if old.get(batch_key) == new.get(batch_key):
        b = old[batch_key]
        last = old[count_key] // b * b
        return (f" (extending is possible only when the recorded count is a multiple of the batch size {b}: "
                f"items {last}-{old[count_key] - 1} of the last, partial batch would change)")
    return ""


def _show(settings: dict, key: str) -> str:
    """A recorded value for the message; a `<name>_sha256` key shows `<name>` with a short hash."""
    v = settings[key]
    if key.endswith("_sha256"):
        name = json.dumps(settings.get(key[:-len("_sha256")]), ensure_ascii=False)
        return f"{name} (sha256 {v[:12]})" if v else name
    return json.dumps(v, ensure_ascii=False)


def clean_stale_tmp(folder: str | Path, own_tag: str) -> int:
    """Remove temp files left by killed runs: those of `own_tag` (whose lock the caller holds), of
    every other shard whose lock is free, and of dead pid-tagged writers. Returns how many."""
    folder = Path(folder)
    by_tag: dict[str, list[Path]] = {}
    for sub in (folder, *(p for p in folder.iterdir() if p.is_dir())):
        with os.scandir(sub) as it:
            for e in it:
                m = _TMP.match(e.name)
                if m and e.is_file(follow_symlinks=False):
                    by_tag.setdefault(m.group(1), []).append(Path(e.path))
    removed = 0
    for tag, paths in by_tag.items():
        if tag == own_tag or (tag.isdigit() and not _alive(int(tag))):
            removed += _unlink(paths)
        elif _SHARD_TAG.match(tag):
            lock = FolderLock(folder, tag)
            if lock.acquire(blocking=False):  # nobody writes that shard now
                try:
                    removed += _unlink(paths)
                finally:
                    lock.release()
    return removed


def _remove_tmp(folder: Path, tag: str) -> None:
    _unlink([p for p in folder.glob(f".*.{tag}.tmp")])


def _unlink(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
