"""Files every part of the suite writes: atomic writes, JSON with clear errors, the environment.

Every file goes to a temporary name in its folder and is renamed into place, so a killed run
never leaves a half-written file. :func:`environment` is the record of the machine and versions
that ``config.json`` and the bench tables carry.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from sidu_bench.errors import ParameterError

__all__ = [
    "FORMULA_PREFIXES",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable_folder",
    "environment",
    "escape_cell",
    "installed_version",
    "read_json",
    "unescape_cell",
    "write_json",
]

VERSIONED_PACKAGES = (
    "sidu-bench",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pandas",
    "onnxruntime",
)
"""The packages whose versions :func:`environment` records (``None`` when not installed)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    The file gets the permissions a plain write would give (``0o666`` less the umask), not the
    temporary file's ``0o600``.

    Raises:
        OSError: the file cannot be written (a full disk, no permission); the message names
            ``path`` (not the temporary file) and the cause.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), 0o666 & ~_umask())
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            cause = error.strerror or str(error)
            raise OSError(error.errno, f"cannot write {path}: {cause}") from error
        raise


FORMULA_PREFIXES = ("=", "+", "-", "@")
"""First characters that make a spreadsheet read a CSV cell as a formula."""


def escape_cell(value: object) -> object:
    """A text cell as a CSV file holds it: ``'`` put before a formula-like text.

    The rule (the spreadsheet convention): a text that begins with ``=``, ``+``, ``-``, ``@`` or
    ``'`` is written with one more ``'`` in front; :func:`unescape_cell` takes one leading ``'``
    away, so every text round-trips (``'x`` is written ``''x``). Numbers are never escaped.

    Example:
        >>> [escape_cell(v) for v in ("=HYPERLINK(1)", "'quoted", "cat", 3)]
        ["'=HYPERLINK(1)", "''quoted", 'cat', 3]
    """
    if isinstance(value, str) and value.startswith((*FORMULA_PREFIXES, "'")):
        return f"'{value}"
    return value


def unescape_cell(value: object) -> object:
    """A text cell as written by :func:`escape_cell`, back to its text."""
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def check_writable_folder(path: Path, parameter: str) -> Path:
    """Make sure ``path`` is (or can become) a folder this process can write into.

    A probe file is created and removed, so a read-only folder or file system is found before
    any work is done (the ``root`` user included, who passes permission checks).

    Args:
        path: the folder.
        parameter: the argument that named it, for the error (``"out"``).

    Raises:
        ParameterError: ``path`` is a file, or the folder cannot be created or written into
            (naming ``parameter``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ParameterError(f"`{parameter}` {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe, name = tempfile.mkstemp(dir=path, prefix=".write-probe.")
        os.close(probe)
        os.unlink(name)
    except OSError as error:
        raise ParameterError(
            f"`{parameter}` {path} cannot be written into: {error.strerror or error}"
        ) from error
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: Path, kind: str) -> object:
    """Parse the JSON file ``path``.

    Args:
        path: the file.
        kind: what the file is, in words (``"gate file"``), for the error messages.

    Raises:
        FileNotFoundError: the file does not exist (the message names ``kind`` and the path).
        ValueError: the file is not valid UTF-8 JSON (likewise).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{kind} {path} is not valid JSON: {error}") from error


def write_json(path: Path, content: object) -> None:
    """Write ``content`` as indented JSON (non-JSON values as their ``str``) atomically."""
    atomic_write_text(path, json.dumps(content, indent=2, default=str) + "\n")


def installed_version(package: str | None) -> str | None:
    """The installed version of the distribution ``package`` (``None`` when not installed)."""
    if package is None:
        return None
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict[str, object]:
    """Package versions, git commit, Python, platform, device name and CPU capability.

    Args:
        device: the device the numbers come from (``"cpu"``, ``"cuda:0"``, ...); a CUDA device
            is named by its GPU, the CPU by its model name.
    """
    versions = {package: installed_version(package) for package in VERSIONED_PACKAGES}
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = _cpu_name()
    return {
        "versions": versions,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device_name": device_name,
        "device": device,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def _cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """``HEAD`` of the package's checkout, with ``+uncommitted`` when its code is modified."""
    package = Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], package)
    if not commit:
        return None
    changes = _git(
        ["status", "--porcelain", "--untracked-files=no", "--", "sidu", "sidu_bench"],
        package.parent,
    )
    return f"{commit}+uncommitted" if changes else commit


def _git(arguments: list[str], where: Path) -> str:
    try:
        completed = subprocess.run(
            ["git", *arguments],
            capture_output=True,
            text=True,
            check=False,
            cwd=where,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""
