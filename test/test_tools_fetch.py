"""avatar-forcing-fetch against a local server that speaks the hub's file API (HF_ENDPOINT), for
a small repository this test makes: fresh fetch, interrupted fetch resumed, corrupt file refused,
wrong-shape checkpoint refused, no network. The command runs as its own process, as a user runs
it; the checkpoints are random weights of a small configuration checked against its manifest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avatar_forcing_ros.core.checkpoint import load_weights_file, save_weights_file
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.model_files import resolve_model_files
from avatar_forcing_ros.tools import fetch
from hub_server import HubRepo, LocalHub
from release_layout import TINY_WAV2VEC2, wide_tiny, write_manifest, write_release_layout

CHECKPOINTS = ("flow_transformer.pth", "motion_autoencoder.pth")
WAV2VEC2 = ("config.json", "preprocessor_config.json", "model.safetensors")
CHUNK = 10 * 1024 * 1024          # the hub client writes what it received in pieces of this size


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, bytes]:
    """The hub repositories' files: random weights of wide_tiny in the release layout."""
    folder = write_release_layout(tmp_path_factory.mktemp("release"), wide_tiny())
    files = {name: (folder / name).read_bytes() for name in CHECKPOINTS}
    files.update({f"w2v/{name}": (TINY_WAV2VEC2 / name).read_bytes() for name in WAV2VEC2})
    return files


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("manifest") / "manifest.json", wide_tiny())


def repos(files: dict[str, bytes]) -> dict[str, HubRepo]:
    return {
        fetch.CHECKPOINT_REPO: HubRepo("1" * 40, {n: files[n] for n in CHECKPOINTS}),
        fetch.WAV2VEC2_REPO: HubRepo(fetch.WAV2VEC2_REVISION, {n: files[f"w2v/{n}"] for n in WAV2VEC2}),
    }


def run_fetch(folder: Path, endpoint: str, manifest: Path, tmp_path: Path,
              *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf_home"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "avatar_forcing_ros.tools.fetch", "--dir", str(folder),
                           "--manifest", str(manifest), *options], env=env, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("avatar-forcing-fetch:"))
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_fresh_fetch_gives_the_release_layout_that_loads(tmp_path, release, manifest):
    folder = tmp_path / "models"
    with LocalHub(repos(release)) as hub:
        result = run_fetch(folder, hub.url, manifest, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == str(folder)
        assert "CC BY-NC 4.0" in result.stderr and "non-commercial" in result.stderr
        for name in CHECKPOINTS:
            assert (folder / name).read_bytes() == release[name]
        for name in WAV2VEC2:
            assert (folder / "wav2vec2-base-960h" / name).read_bytes() == release[f"w2v/{name}"]
        record = json.loads((folder / "fetched.json").read_text())
        assert {r["commit"] for r in record} == {"1" * 40, fetch.WAV2VEC2_REVISION}
        # what the nodes do with it: resolve the release layout and load it
        model = AvatarForcing.from_files(resolve_model_files(folder), cfg=wide_tiny())
        assert model.cfg.dim_h == 256
        # a second run finds everything in place: nothing is downloaded again
        gets = sum(1 for m, _, _ in hub.requests if m == "GET")
        again = run_fetch(folder, hub.url, manifest, tmp_path)
        assert again.returncode == 0, again.stderr
        assert sum(1 for m, _, _ in hub.requests if m == "GET") == gets


def test_interrupted_fetch_resumes_where_it_stopped(tmp_path, release, manifest):
    folder = tmp_path / "models"
    size = len(release["flow_transformer.pth"])
    assert size > CHUNK + 768 * 1024
    with LocalHub(repos(release)) as hub:
        hub.cut_after["flow_transformer.pth"] = CHUNK + 512 * 1024      # the connection drops
        first = run_fetch(folder, hub.url, manifest, tmp_path)
        assert_one_line_error(first, "cut off", "again to resume")
        assert not (folder / "flow_transformer.pth").exists()
        second = run_fetch(folder, hub.url, manifest, tmp_path)
        assert second.returncode == 0, second.stderr
        ranges = hub.ranges("flow_transformer.pth")
    assert ranges[0] is None and ranges[-1] == f"bytes={CHUNK}-"         # resumed, not restarted
    assert (folder / "flow_transformer.pth").read_bytes() == release["flow_transformer.pth"]


def test_corrupt_download_is_refused_and_removed(tmp_path, release, manifest):
    folder = tmp_path / "models"
    with LocalHub(repos(release)) as hub:
        hub.corrupt["motion_autoencoder.pth"] = True
        result = run_fetch(folder, hub.url, manifest, tmp_path)
        assert_one_line_error(result, "motion_autoencoder.pth is corrupt", "sha256")
        assert not (folder / "motion_autoencoder.pth").exists()       # nothing the nodes could load
        assert hub.ranges("config.json") == []                         # stopped before wav2vec2
        hub.corrupt.clear()                                            # a good copy: run again
        assert run_fetch(folder, hub.url, manifest, tmp_path).returncode == 0


def test_a_file_corrupted_on_disk_is_found_on_the_next_run(tmp_path, release, manifest):
    folder = tmp_path / "models"
    path = folder / "flow_transformer.pth"
    with LocalHub(repos(release)) as hub:
        assert run_fetch(folder, hub.url, manifest, tmp_path).returncode == 0
        before = os.stat(path)
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))
        # stamped explicitly: the file system's clock is coarser than the hub client's record
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
        # changed after the download: the hub client notices and fetches a good copy
        assert run_fetch(folder, hub.url, manifest, tmp_path).returncode == 0
        assert path.read_bytes() == release["flow_transformer.pth"]
        # changed without a newer time stamp (bit rot): the sha256 check refuses and removes it
        path.write_bytes(bytes(data))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        result = run_fetch(folder, hub.url, manifest, tmp_path)
    assert_one_line_error(result, "flow_transformer.pth is corrupt")
    assert not path.exists()


def test_checkpoint_with_a_wrong_shape_is_refused(tmp_path, release, manifest):
    src = tmp_path / "src" / "flow_transformer.pth"
    src.parent.mkdir()
    src.write_bytes(release["flow_transformer.pth"])
    state = load_weights_file(src)
    key = "flow_transformer.x_embedder.proj.weight"
    state[key] = torch.zeros(3, 3)
    save_weights_file(state, src.with_name("wrong.pth"))     # (src is memory-mapped by the load)
    files = {**release, "flow_transformer.pth": src.with_name("wrong.pth").read_bytes()}
    with LocalHub(repos(files)) as hub:
        result = run_fetch(tmp_path / "models", hub.url, manifest, tmp_path)
    assert_one_line_error(result, "flow_transformer.pth does not fit the model",
                          f"1 mis-shaped (first: {key}: file [3, 3] vs model [256, 128])")

def test_the_official_manifest_is_the_default_and_refuses_small_weights(tmp_path, release):
    """Without --manifest the packaged official one is used: tiny weights do not pass it."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home")}
    with LocalHub(repos(release)) as hub:
        env["HF_ENDPOINT"] = hub.url
        result = subprocess.run([sys.executable, "-m", "avatar_forcing_ros.tools.fetch", "--dir",
                                 str(tmp_path / "models")], env=env, capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "does not fit the model", "missing (first: flow_transformer.",
                          "mis-shaped (first: ")


def test_without_network_the_manual_steps_are_printed(tmp_path, manifest):
    with LocalHub({}) as hub:
        closed = hub.url                                   # nothing listens there any more
    result = run_fetch(tmp_path / "models", closed, manifest, tmp_path)
    line = assert_one_line_error(result, "cannot reach the hub", "no network?")
    assert line == result.stderr.splitlines()[result.stderr.splitlines().index(line)]
    steps = result.stderr[result.stderr.index("Manual steps"):]
    for fragment in ("multimodalart/AvatarForcingHelpers/resolve/main/flow_transformer.pth",
                     "motion_autoencoder.pth", "drive.google.com",
                     f"facebook/wav2vec2-base-960h/resolve/{fetch.WAV2VEC2_REVISION}/config.json",
                     str(tmp_path / "models" / "wav2vec2-base-960h"), "--check --dir"):
        assert fragment in steps
    # the files laid out by hand are checked without the network
    folder = write_release_layout(tmp_path / "models", wide_tiny(), with_config=False)
    checked = run_fetch(folder, closed, manifest, tmp_path, "--check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == str(folder)
    (folder / "motion_autoencoder.pth").unlink()
    missing = run_fetch(folder, closed, manifest, tmp_path, "--check")
    assert_one_line_error(missing, f"motion_autoencoder checkpoint not found: {folder}/motion_autoencoder.pth",
                          "run `avatar-forcing-fetch`")
