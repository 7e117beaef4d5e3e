"""Where the tests' data lives: inside this repository, never beside it (a user's clone has no
sibling folders). A missing fixture is an error of the checkout, so it fails loudly."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARITY_TINY = FIXTURES / "parity" / "tiny"   # parity-tiny weights, inputs, noise, goldens (README.md there)
OFFICIAL_MANIFEST = REPO / "avatar_forcing_ros" / "core" / "official_manifest.json"

for _path in (PARITY_TINY / "goldens.safetensors", PARITY_TINY / "wav2vec2" / "config.json", OFFICIAL_MANIFEST):
    if not _path.is_file():
        raise FileNotFoundError(f"test fixture missing: {_path} (is the checkout complete? "
                                "Git LFS is not used; the files are committed as they are)")
