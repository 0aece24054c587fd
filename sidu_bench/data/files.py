"""Listing data files without opening what is not a file: regular files only, no directory twice.

A data tree may hold entries that are no files to read: a FIFO, a socket or a device named like an
image (opening a FIFO for reading blocks until a writer comes: the run would hang), a broken link,
or a directory link back up the tree (walking it loops until paths grow too long). The helpers
here look at metadata only (``os.stat``), never open an entry, and walk each directory once.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

IMAGE_EXTENSIONS: tuple[str, ...] = tuple(IMG_EXTENSIONS)
"""Image file name endings (lower case; matched case-insensitively): torchvision's
``IMG_EXTENSIONS``, so that a tree lists the files torchvision's ImageFolder lists."""

DirectoryId = tuple[int, int]
"""A directory's identity: ``(st_dev, st_ino)`` of the directory a path leads to."""

_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(path: Path | str) -> str | None:
    """Why ``path`` is not a regular file (links followed), or ``None`` when it is one.

    Only the file's metadata is read; the file is never opened.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     not_regular(folder)
        'not a regular file but a directory'
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"cannot stat it: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), f"of file type {stat.S_IFMT(mode)}")
    return f"not a regular file but {kind}"


def split_regular(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``paths`` into regular files and the others, each with why (:func:`not_regular`).

    Both lists keep the order of ``paths``.
    """
    regular, other = [], []
    for path in paths:
        reason = not_regular(path)
        if reason is None:
            regular.append(path)
        else:
            other.append((path, reason))
    return regular, other


def directory_id(path: Path | str) -> DirectoryId | None:
    """The identity of the directory ``path`` leads to (links followed); ``None`` if none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


@dataclass(frozen=True)
class TreeListing:
    """What :func:`walk_files` found under one folder.

    Attributes:
        files: regular files with an accepted name ending, in listing order.
        other: entries with an accepted name ending that are not regular files (a FIFO, a
            broken link, ...), each with why, in listing order; they are never opened.
        not_walked: directories left out, each with why: one already walked (a link back up the
            tree, or a second way to the same directory) or one that could not be listed.
    """

    files: tuple[Path, ...]
    other: tuple[tuple[Path, str], ...]
    not_walked: tuple[tuple[Path, str], ...]


def walk_files(
    top: Path, extensions: tuple[str, ...], *, walked: set[DirectoryId] | None = None
) -> TreeListing:
    """List the files under ``top`` whose name ends with one of ``extensions``, recursively.

    The order is that of torchvision's ``make_dataset``: directories sorted by path (as
    ``sorted(os.walk(top))`` sorts them), then file names sorted within each directory.
    Directory links are followed, but no directory is walked twice: a directory whose identity
    is in ``walked`` (or was walked earlier in this call, found by a depth-first walk in sorted
    name order) is left out and reported in ``not_walked``. ``top`` itself is always walked;
    ``walked`` is updated with every directory walked, so that a caller can share it between
    several tops (and put directories that no walk may enter, such as the data root, in it).
    Entries are never opened: regular files and the rest are told apart by their metadata.

    Args:
        top: the folder to walk.
        extensions: accepted name endings, lower case (matched case-insensitively).
        walked: identities of directories not to walk again (updated in place).

    Returns:
        The files, the other entries with an accepted ending, and the directories left out.
    """
    walked = set() if walked is None else walked
    top_id = directory_id(top)
    if top_id is not None:
        walked.add(top_id)
    not_walked: list[tuple[Path, str]] = []

    def unlisted(error: OSError) -> None:
        where = error.filename if error.filename is not None else top
        not_walked.append((Path(where), f"cannot be listed: {error.strerror or error}"))

    directories: list[tuple[str, list[str]]] = []
    for folder, subfolders, names in os.walk(top, followlinks=True, onerror=unlisted):
        keep = []
        for name in sorted(subfolders):
            identity = directory_id(os.path.join(folder, name))
            if identity is None or identity in walked:
                not_walked.append((Path(folder, name), "a directory listed elsewhere"))
                continue
            walked.add(identity)
            keep.append(name)
        subfolders[:] = keep
        directories.append((folder, names))
    files: list[Path] = []
    other: list[tuple[Path, str]] = []
    for folder, names in sorted(directories):
        accepted = (
            Path(folder, name) for name in sorted(names) if name.lower().endswith(extensions)
        )
        regular, rest = split_regular(accepted)
        files += regular
        other += rest
    return TreeListing(tuple(files), tuple(other), tuple(not_walked))
