"""A FUSE file system that forgets what was not fsynced, for power-loss tests.

    python lazyfs.py BACKING MOUNTPOINT

Everything under MOUNTPOINT is BACKING, except that:

- File data written and not yet made durable by fsync/fdatasync of that file lives
  only in this process (dirty 4 KiB pages and a pending size), as in a page cache.
  fsync writes those pages to BACKING and fsyncs them there.
- Names are changed in BACKING at once (create, mkdir, unlink, rmdir, rename), but
  each change is journaled until the directory it changed is fsynced (fsyncdir).
  A rename changes two directories and needs both fsynced.

A "power cut" happens when anything looks up `/.lazyfs-crash`: every dirty page and
pending size is dropped, and every journaled name change is undone, newest first
(an unlinked or replaced file comes back from a trash folder in BACKING). BACKING is
then what a disk would hold after a power cut at that moment under the strictest
POSIX reading (nothing reaches the disk unless fsync said so), and the process
keeps serving that state until it is unmounted. The test kills the program using
the file system first, so nothing runs during the cut.

This is the idea of LazyFS (dsrhaslab/lazyfs), written small for ferromq's tests.
It is single-threaded (fusepy's nothreads) and keeps nothing it does not need: a
test's data directory is tens of MB.
"""

import errno
import os
import stat
import sys

from fuse import FUSE, FuseOSError, Operations

PAGE = 4096
CRASH = "/.lazyfs-crash"
TRASH = ".lazyfs-trash"


class Dirty:
    """A file's unsynced state: pages written since the last fsync, and its size."""

    def __init__(self, size):
        self.pages = {}
        self.size = size


class LazyFS(Operations):
    def __init__(self, backing):
        self.root = os.path.realpath(backing)
        self.trash = os.path.join(self.root, TRASH)
        os.makedirs(self.trash, exist_ok=True)
        self.dirty = {}  # inode of the backing file -> Dirty
        self.journal = []  # (directories it needs synced, undo function)
        self.trashed = 0
        self.cuts = 0

    # -- helpers ---------------------------------------------------------------

    def real(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def parent(self, path):
        return os.path.dirname(path.rstrip("/")) or "/"

    def ino(self, path):
        return os.lstat(self.real(path)).st_ino

    def to_trash(self, real):
        self.trashed += 1
        kept = os.path.join(self.trash, str(self.trashed))
        os.rename(real, kept)
        return kept

    def read_page(self, fd, state, index):
        page = state.pages.get(index) if state else None
        if page is not None:
            return bytes(page)
        data = os.pread(fd, PAGE, index * PAGE)
        return data + bytes(PAGE - len(data))

    def size_of(self, path, st=None):
        st = st or os.lstat(self.real(path))
        state = self.dirty.get(st.st_ino)
        return state.size if state else st.st_size

    def crash(self):
        self.cuts += 1
        self.dirty.clear()
        for _, undo in reversed(self.journal):
            undo()
        self.journal.clear()

    # -- metadata --------------------------------------------------------------

    def getattr(self, path, fh=None):
        if path == CRASH:
            self.crash()
            raise FuseOSError(errno.ENOENT)
        if path.startswith("/" + TRASH):
            raise FuseOSError(errno.ENOENT)
        try:
            st = os.lstat(self.real(path))
        except OSError as err:
            raise FuseOSError(err.errno)
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_uid",
            )
        }
        attrs["st_size"] = self.size_of(path, st)
        return attrs

    def readdir(self, path, fh):
        names = [".", ".."] + os.listdir(self.real(path))
        return [n for n in names if not (path == "/" and n == TRASH)]

    def statfs(self, path):
        st = os.statvfs(self.real(path))
        return {
            key: getattr(st, key)
            for key in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax",
            )
        }

    def chmod(self, path, mode):
        os.chmod(self.real(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self.real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self.real(path), times)

    # -- names (journaled until the directory is fsynced) ----------------------

    def mkdir(self, path, mode):
        real = self.real(path)
        os.mkdir(real, mode)
        self.journal.append(({self.parent(path)}, lambda: self.to_trash(real)))

    def create(self, path, mode, fi=None):
        real = self.real(path)
        existed = os.path.exists(real)
        fd = os.open(real, os.O_RDWR | os.O_CREAT, mode)
        if not existed:
            self.journal.append(({self.parent(path)}, lambda: self.to_trash(real)))
        return fd

    def unlink(self, path):
        real = self.real(path)
        kept = self.to_trash(real)
        self.journal.append(({self.parent(path)}, lambda: os.rename(kept, real)))

    def rmdir(self, path):
        real = self.real(path)
        if os.listdir(real):
            raise FuseOSError(errno.ENOTEMPTY)
        kept = self.to_trash(real)
        self.journal.append(({self.parent(path)}, lambda: os.rename(kept, real)))

    def rename(self, old, new):
        real_old, real_new = self.real(old), self.real(new)
        replaced = self.to_trash(real_new) if os.path.exists(real_new) else None

        def undo():
            os.rename(real_new, real_old)
            if replaced:
                os.rename(replaced, real_new)

        os.rename(real_old, real_new)
        self.journal.append(({self.parent(old), self.parent(new)}, undo))

    def fsyncdir(self, path, datasync, fh):
        synced = path.rstrip("/") or "/"
        kept = []
        for dirs, undo in self.journal:
            rest = dirs - {synced}
            if rest:
                kept.append((rest, undo))
        self.journal = kept
        fd = os.open(self.real(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    # -- file data (dirty until fsynced) ---------------------------------------

    def open(self, path, flags):
        return os.open(self.real(path), os.O_RDWR if (flags & 3) else os.O_RDONLY)

    def read(self, path, size, offset, fh):
        st = os.fstat(fh)
        state = self.dirty.get(st.st_ino)
        end = min(offset + size, state.size if state else st.st_size)
        if offset >= end:
            return b""
        if not state:
            return os.pread(fh, end - offset, offset)
        out = bytearray()
        pos = offset
        while pos < end:
            index, within = divmod(pos, PAGE)
            page = self.read_page(fh, state, index)
            take = min(PAGE - within, end - pos)
            out += page[within:within + take]
            pos += take
        return bytes(out)

    def write(self, path, data, offset, fh):
        st = os.fstat(fh)
        state = self.dirty.get(st.st_ino)
        if state is None:
            state = self.dirty[st.st_ino] = Dirty(st.st_size)
        pos, done = offset, 0
        while done < len(data):
            index, within = divmod(pos, PAGE)
            page = state.pages.get(index)
            if page is None:
                page = bytearray(self.read_page(fh, None, index))
                if index * PAGE >= state.size:
                    page = bytearray(PAGE)  # past the end: zeros, not stale bytes
                state.pages[index] = page
            take = min(PAGE - within, len(data) - done)
            page[within:within + take] = data[done:done + take]
            pos += take
            done += take
        state.size = max(state.size, offset + len(data))
        return len(data)

    def truncate(self, path, length, fh=None):
        st = os.lstat(self.real(path))
        state = self.dirty.get(st.st_ino)
        if state is None:
            state = self.dirty[st.st_ino] = Dirty(st.st_size)
        for index in [i for i in state.pages if i * PAGE >= length]:
            del state.pages[index]
        last = length // PAGE
        if last in state.pages:
            cut = length - last * PAGE
            state.pages[last][cut:] = bytes(PAGE - cut)
        state.size = length

    def fallocate(self, path, mode, offset, length, fh):
        raise FuseOSError(errno.EOPNOTSUPP)

    def fsync(self, path, datasync, fh):
        st = os.fstat(fh)
        state = self.dirty.pop(st.st_ino, None)
        if state is not None:
            wfd = os.open(self.real(path), os.O_WRONLY)
            try:
                for index, page in sorted(state.pages.items()):
                    start = index * PAGE
                    if start < state.size:
                        os.pwrite(wfd, bytes(page[: state.size - start]), start)
                os.ftruncate(wfd, state.size)
                os.fsync(wfd)
            finally:
                os.close(wfd)
        else:
            os.fsync(fh)
        return 0

    def flush(self, path, fh):
        return 0  # close() makes nothing durable

    def release(self, path, fh):
        os.close(fh)
        return 0


def main():
    backing, mountpoint = sys.argv[1], sys.argv[2]
    print("lazyfs: serving", mountpoint, "over", backing, flush=True)
    FUSE(LazyFS(backing), mountpoint, foreground=True, nothreads=True, default_permissions=True)


if __name__ == "__main__":
    main()
