"""`avatar-forcing-fetch`: download the official Avatar Forcing release files, check them, and
print the folder to give the nodes. The only command of the package that uses the network
(nodes, tests and the demo never download).

    avatar-forcing-fetch [--dir FOLDER]

What it fetches, into FOLDER (default `$XDG_CACHE_HOME/avatar_forcing_ros/pretrained_dir`), in
the layout the official download script (`download_weights.sh` of TaekyungKi/AvatarForcing)
leaves in `pretrained_dir/`:

    flow_transformer.pth       614 MB  the causal flow transformer (+ audio projection)
    motion_autoencoder.pth     181 MB  the LIA motion autoencoder
    wav2vec2-base-960h/        the frozen audio encoder (facebook/wav2vec2-base-960h)

The official script takes the two checkpoints from a Google Drive folder, which rate-limits
large files and has no client here; the same files are on the Hugging Face hub in
`multimodalart/AvatarForcingHelpers`, which is the default source. Downloads use the hub's own
client (`huggingface_hub`): resumable (`.incomplete` files under FOLDER/.cache), streamed to disk,
with progress bars. Every large file's sha256 is then compared with the hub's (the client checks
sizes only), and each checkpoint's keys and shapes with the packaged manifest, from the file
headers only. The commits fetched are written to FOLDER/fetched.json.

Exit status: 0 = ready (the folder is printed on stdout); 1 = a download or a check failed, or
no network (the manual steps are printed); 130 = interrupted (run it again to resume).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..core.checkpoint import CheckpointError, CheckpointMismatchError
from ..core.model_files import (FETCH_COMMAND, FILE_PREFIXES, FLOW_FILE, MOTION_FILE,
                                WAV2VEC2_FOLDERS, default_model_dir, resolve_model_files)
from .interrupt import interruptible

LOG = logging.getLogger("avatar_forcing_fetch")
CHECKPOINT_REPO = "multimodalart/AvatarForcingHelpers"
# The hub copy has no tagged release and its commit could not be looked up when this was
# written (no network): "main" is fetched and the commit it resolved to is recorded in
# fetched.json; `--revision` pins another one.
CHECKPOINT_REVISION = "main"
WAV2VEC2_REPO = "facebook/wav2vec2-base-960h"
WAV2VEC2_REVISION = "22aad52d435eb6dbaf354bdad9b0da84ce7d6156"
# config + feature-extractor settings + one weights file (the TF/Flax copies are not needed)
WAV2VEC2_FILES = ("config.json", "preprocessor_config.json")
WAV2VEC2_WEIGHTS = ("model.safetensors", "pytorch_model.bin")     # the first the revision has
OFFICIAL_DRIVE = "https://drive.google.com/drive/folders/1rN52J2QXD8A-r2CZ8nDqFdwvZuPRmMsc"
LICENCE = ("The Avatar Forcing weights are licensed CC BY-NC 4.0: non-commercial use only "
           "(https://github.com/TaekyungKi/AvatarForcing/blob/main/LICENSE.md).")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FetchError(RuntimeError):
    """A download or check that failed; the message is the one line the user sees."""


class NoNetworkError(FetchError):
    """The hub cannot be reached."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    repo: str
    commit: str
    sha256: str | None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=FETCH_COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=None,
                   help=f"folder to download into (default: {default_model_dir()})")
    p.add_argument("--repo", default=CHECKPOINT_REPO,
                   help=f"hub repository with the two checkpoints (default: {CHECKPOINT_REPO})")
    p.add_argument("--revision", default=CHECKPOINT_REVISION,
                   help="branch, tag or commit of that repository (default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="no download: check the files already in the folder (e.g. copied by hand)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="key/shape manifest the checkpoints must fit (default: the packaged "
                        "official manifest; another one for other model sizes)")
    return p.parse_args(argv)


def manual_steps(folder: Path, repo: str, revision: str) -> str:
    """What to do by hand: where the files are and where they go."""
    hub = "https://huggingface.co"
    w2v = "/".join([hub, WAV2VEC2_REPO, "resolve", WAV2VEC2_REVISION])
    return "\n".join([
        "Manual steps: download these files on a machine with network access",
        f"  {hub}/{repo}/resolve/{revision}/{FLOW_FILE}.pth",
        f"  {hub}/{repo}/resolve/{revision}/{MOTION_FILE}.pth",
        f"    (the official copies: {OFFICIAL_DRIVE})",
        *[f"  {w2v}/{name}" for name in (*WAV2VEC2_FILES, WAV2VEC2_WEIGHTS[0])],
        "and lay them out as the release does:",
        f"  {folder}/{FLOW_FILE}.pth",
        f"  {folder}/{MOTION_FILE}.pth",
        f"  {folder}/{WAV2VEC2_FOLDERS[0]}/{{{', '.join((*WAV2VEC2_FILES, WAV2VEC2_WEIGHTS[0]))}}}",
        f"then check them with `{FETCH_COMMAND} --check --dir {folder}`.",
    ])


def _hub():
    """The client, imported late so that --help works without it and errors are ours."""
    import huggingface_hub
    import huggingface_hub.constants
    import requests
    from huggingface_hub import errors
    return huggingface_hub, requests, errors


def check_reachable(timeout_s: float = 10.0) -> None:
    """NoNetworkError at once when the hub's host cannot be reached (the client itself would
    retry with back-off for half a minute before saying so)."""
    hf, _, _ = _hub()
    url = urlparse(hf.constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise NoNetworkError(f"cannot reach the hub ({hf.constants.ENDPOINT}): {exc}") from exc


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in 8 MiB pieces (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


def download(repo: str, filename: str, revision: str, folder: Path) -> Fetched:
    """One file of a hub repository into folder/filename, resumable, its sha256 checked."""
    hf, requests, errors = _hub()
    url = hf.hf_hub_url(repo, filename, revision=revision)
    try:
        meta = hf.get_hf_file_metadata(url)
        path = Path(hf.hf_hub_download(repo, filename, revision=meta.commit_hash, local_dir=folder))
    except errors.EntryNotFoundError as exc:
        raise FetchError(f"{repo} has no {filename} at {revision}") from exc
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise FetchError(f"{repo} at {revision} not found on the hub ({url})") from exc
    except (requests.ConnectionError, requests.Timeout, errors.OfflineModeIsEnabled,
            errors.LocalEntryNotFoundError) as exc:
        raise NoNetworkError(f"cannot reach the hub ({hf.constants.ENDPOINT}) for {repo}/{filename}: "
                             f"{type(exc).__name__}") from exc
    except requests.exceptions.ChunkedEncodingError as exc:     # the connection dropped mid-file
        raise FetchError(f"the download of {filename} was cut off; run `{FETCH_COMMAND}` "
                         f"again to resume it ({exc})") from exc
    except (requests.HTTPError, OSError) as exc:
        raise FetchError(f"downloading {repo}/{filename} failed: {exc}") from exc
    expected = (meta.etag or "").strip('"')
    if not _SHA256.match(expected):           # a small git file: its etag is no sha256
        return Fetched(path, repo, meta.commit_hash, None)
    actual = sha256_of(path)
    if actual != expected:
        path.unlink()                         # never leave a corrupt file where the nodes look
        raise FetchError(f"{path} is corrupt (sha256 {actual[:12]}..., the hub's is "
                         f"{expected[:12]}...); removed it: run `{FETCH_COMMAND}` again")
    return Fetched(path, repo, meta.commit_hash, actual)


def fetch_wav2vec2(folder: Path) -> list[Fetched]:
    """The wav2vec2 folder's files (config, feature extractor, the first weights file it has)."""
    _, _, errors = _hub()
    fetched = [download(WAV2VEC2_REPO, name, WAV2VEC2_REVISION, folder) for name in WAV2VEC2_FILES]
    for name in WAV2VEC2_WEIGHTS:
        try:
            return fetched + [download(WAV2VEC2_REPO, name, WAV2VEC2_REVISION, folder)]
        except FetchError as exc:
            if not isinstance(exc.__cause__, errors.EntryNotFoundError):
                raise
    raise FetchError(f"{WAV2VEC2_REPO} at {WAV2VEC2_REVISION} has none of {WAV2VEC2_WEIGHTS}")


def mismatch_summary(exc: CheckpointMismatchError) -> str:
    """One line: how many keys are missing, unexpected, mis-shaped, with the first of each."""
    parts = [f"{len(exc.missing)} missing (first: {exc.missing[0]})" if exc.missing else "",
             f"{len(exc.unexpected)} unexpected (first: {exc.unexpected[0]})" if exc.unexpected else ""]
    if exc.mis_shaped:
        key, got, want = exc.mis_shaped[0]
        parts.append(f"{len(exc.mis_shaped)} mis-shaped (first: {key}: file {list(got)} vs model {list(want)})")
    return "; ".join(p for p in parts if p)


def check_checkpoints(files: dict[str, Path], manifest: Path | None) -> None:
    """Each checkpoint's keys and shapes against the manifest (headers only)."""
    from ..core.manifest import OFFICIAL_MANIFEST, check_weights_file, read_manifest
    expected = read_manifest(manifest or OFFICIAL_MANIFEST)
    for stem, path in files.items():
        try:
            count = check_weights_file(path, expected, FILE_PREFIXES[stem])
        except CheckpointMismatchError as exc:
            raise FetchError(f"{path} does not fit the model: {mismatch_summary(exc)}") from exc
        except CheckpointError as exc:
            raise FetchError(f"{path} is no usable weights file: {exc}") from exc
        LOG.info("%s: %d tensors, keys and shapes as in the manifest", path.name, count)


def check_folder(folder: Path, manifest: Path | None) -> None:
    """The release layout present (else the missing file is named) and the checkpoints fitting."""
    try:
        files = resolve_model_files(folder)
    except FileNotFoundError as exc:
        raise FetchError(str(exc)) from exc
    check_checkpoints({FLOW_FILE: files.flow_transformer, MOTION_FILE: files.motion_autoencoder}, manifest)


def fetch(folder: Path, repo: str, revision: str, manifest: Path | None) -> list[Fetched]:
    check_reachable()
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = [download(repo, f"{stem}.pth", revision, folder) for stem in (FLOW_FILE, MOTION_FILE)]
    check_checkpoints({stem: f.path for stem, f in zip((FLOW_FILE, MOTION_FILE), checkpoints)}, manifest)
    fetched = checkpoints + fetch_wav2vec2(folder / WAV2VEC2_FOLDERS[0])
    record = [{"file": str(f.path.relative_to(folder)), "repo": f.repo, "commit": f.commit,
               "sha256": f.sha256} for f in fetched]
    (folder / "fetched.json").write_text(json.dumps(record, indent=1) + "\n")
    return fetched


@interruptible
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=f"[{FETCH_COMMAND}] %(message)s")
    args = parse_args(argv)
    folder = (args.dir or default_model_dir()).expanduser().resolve()
    LOG.info("%s", LICENCE)
    try:
        if args.check:
            check_folder(folder, args.manifest)
        else:
            fetch(folder, args.repo, args.revision, args.manifest)
    except NoNetworkError as exc:
        print(f"{FETCH_COMMAND}: {exc}: no network?", file=sys.stderr)
        print(manual_steps(folder, args.repo, args.revision), file=sys.stderr)
        return 1
    except FetchError as exc:
        print(f"{FETCH_COMMAND}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{FETCH_COMMAND}: interrupted; run it again to resume the download", file=sys.stderr)
        return 130
    LOG.info("ready: give the nodes checkpoint_dir:=%s (it is also their default)", folder)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
