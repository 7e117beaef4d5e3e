"""`avatar-forcing-preprocess`: a folder of paired conversation videos -> the training dataset format.

Pairing rule: `NAME_avatar.EXT` (the side the model learns to generate) and `NAME_user.EXT` (the
interlocutor), EXT one of mp4, mkv, mov, avi, webm, make session NAME. Audio of each side is read
from `NAME_avatar.wav` / `NAME_user.wav` when such a file exists (soundfile), else extracted from
the video with ffmpeg (the Debian package installed by scripts/setup.sh) as 16 kHz mono float.
A video without a partner is reported as unpaired.

Per session (see dataset.py for the output format):
1. both videos are read with OpenCV and resampled to the model's 25 fps by nearest frame time;
   the session has T = the shorter side's frame count (audio is cut or replicate-padded to T
   frames, as the audio encoder pads);
2. each side gets one face crop for the whole video (core/face_crop.crop_video: the reference's
   square-crop recipe around the mean face box); a side with no face in any frame makes the
   session "faceless" and it is skipped;
3. motion latents of both sides: MotionAutoencoder.encode_motion; identity r_s: the avatar's
   first cropped frame through encode_appearance and Direction (the portrait role at inference);
4. audio: the frozen wav2vec2 over the whole normalised track (as the reference encodes), all layer
   outputs at 25 fps ("wav2vec2_layers", so the trainer learns the projection), or with
   `--projected` the checkpoint's projection applied too ("projected").
Every `--val-every`-th session (in name order) goes to the "val" split.

Resumable: a session whose file is already listed in index.json is skipped; files and the index
are written atomically after every session. Sessions that fail (unreadable video, no audio, no
face, too short) are listed with the reason in `preprocess_report.json` and on stderr, never
skipped silently; the exit status is 1 when any session failed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from avatar_forcing_ros.core.audio_encoder import normalize_audio
from avatar_forcing_ros.core.face_crop import FaceDetector, crop_video, to_model_input
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.tools.media_io import MediaError, read_video_frames
from avatar_forcing_ros.tools.media_io import read_audio as read_media_audio
from avatar_forcing_ros.training.cli_help import HelpFormatter
from avatar_forcing_ros.training.dataset import FORMAT, Session, write_index, write_session

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm")
SIDES = ("avatar", "user")
REPORT = "preprocess_report.json"


class SessionError(Exception):
    """A session that cannot be converted; the message is the reason written to the report."""


def find_pairs(folder: Path) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """{name: {"avatar": path, "user": path}} for complete pairs, and the unpaired file names."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = path.stem
        if path.suffix.lower() not in VIDEO_EXTS or "_" not in stem:
            continue
        name, side = stem.rsplit("_", 1)
        if side in SIDES:
            found.setdefault(name, {})[side] = path
    pairs = {n: s for n, s in found.items() if len(s) == 2}
    unpaired = sorted(str(p.name) for n, s in found.items() if len(s) < 2 for p in s.values())
    return pairs, unpaired


def read_frames(path: Path, fps: int) -> list[np.ndarray]:
    """RGB uint8 frames resampled to `fps` (the offline command's reader)."""
    try:
        return read_video_frames(path, fps)
    except MediaError as err:
        raise SessionError(str(err)) from err


def read_audio(video: Path, sampling_rate: int) -> np.ndarray:
    """Mono float32 at `sampling_rate`: the side WAV if present, else the video's track (ffmpeg)."""
    wav = video.with_suffix(".wav")
    if wav.is_file():
        data, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
        if rate != sampling_rate:
            raise SessionError(f"{wav.name} is {rate} Hz; provide {sampling_rate} Hz or let ffmpeg extract it")
        return data.mean(axis=1)
    try:
        return read_media_audio(video, sampling_rate)
    except MediaError as err:
        raise SessionError(str(err)) from err


class Encoders:
    """The frozen encoders of a release checkpoint, on one device."""

    def __init__(self, model: AvatarForcing, projected: bool, device: torch.device) -> None:
        self.model, self.projected, self.device = model, projected, device
        self.cfg = model.cfg
        self.detector = FaceDetector()

    @torch.inference_mode()
    def motion(self, frames: list[np.ndarray], what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion latents (T, dim_w) of one side, and its first crop as model input (1, 3, S, S)."""
        crops = crop_video(frames, self.cfg.input_size, detector=self.detector)
        if crops is None:
            raise SessionError(f"no face found in the {what} video")
        x = to_model_input(np.stack(crops)).to(self.device)
        return self.model.motion_autoencoder.encode_motion(x).cpu(), x[:1]

    @torch.inference_mode()
    def identity(self, first_crop: torch.Tensor) -> torch.Tensor:
        return self.model.motion_autoencoder.encode_motion(first_crop)[0].cpu()   # r_s, without the pyramid

    @torch.inference_mode()
    def audio(self, samples: np.ndarray, frames: int) -> torch.Tensor:
        """(frames, audio_dim) features of one whole track (cut or replicate-padded to `frames`)."""
        enc = self.model.audio_encoder
        need = frames * self.cfg.samples_per_frame
        x = torch.from_numpy(normalize_audio(samples[:need]))[None].to(self.device)
        if self.projected:
            return enc.encode(x, frames)[0].cpu()
        if x.shape[1] < need:
            x = torch.nn.functional.pad(x[:, None], (0, need - x.shape[1]), mode="replicate")[:, 0]
        return enc.layer_stack(enc.to_frame_rate(enc.conv_features(x), frames))[0].cpu()


def convert(name: str, pair: dict[str, Path], enc: Encoders) -> Session:
    fps, rate = enc.cfg.fps, enc.cfg.sampling_rate
    frames = {side: read_frames(pair[side], fps) for side in SIDES}
    audio = {side: read_audio(pair[side], rate) for side in SIDES}
    total = min(len(f) for f in frames.values())
    if total < enc.cfg.window_frames:
        raise SessionError(f"only {total} frames at {fps} fps; a training window needs {enc.cfg.window_frames}")
    avatar_motion, first = enc.motion(frames["avatar"][:total], "avatar")
    user_motion, _ = enc.motion(frames["user"][:total], "user")
    return Session(name, avatar_motion=avatar_motion, user_motion=user_motion,
                   avatar_audio=enc.audio(audio["avatar"], total), user_audio=enc.audio(audio["user"], total),
                   identity=enc.identity(first))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar-forcing-preprocess", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("videos", help="folder of NAME_avatar.* / NAME_user.* video pairs")
    p.add_argument("out", help="dataset folder to create or complete")
    p.add_argument("--checkpoint", required=True, help="release checkpoint folder (motion autoencoder, config)")
    p.add_argument("--wav2vec2", required=True, help="wav2vec2 folder (facebook/wav2vec2-base-960h)")
    p.add_argument("--projected", action="store_true", help="store projected audio features (train only the transformer)")
    p.add_argument("--val-every", type=int, default=10, help="every N-th session goes to the val split (0: none)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device for the motion encoder and wav2vec2")
    return p


def _load_done(out: Path) -> list[dict]:
    index = out / "index.json"
    if not index.is_file():
        return []
    data = json.loads(index.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{index} is not a {FORMAT} index")
    return [e for e in data["sessions"] if (out / e["file"]).is_file()]


@interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    videos, out = Path(args.videos), Path(args.out)
    if not videos.is_dir():
        print(f"avatar-forcing-preprocess: {videos} is not a folder", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    model = AvatarForcing.from_pretrained(args.checkpoint, args.wav2vec2, device=device)
    enc = Encoders(model, args.projected, device)
    cfg = model.cfg
    kind = "projected" if args.projected else "wav2vec2_layers"
    audio_dim = cfg.dim_a if args.projected else cfg.audio_feature_dim
    pairs, unpaired = find_pairs(videos)
    out.mkdir(parents=True, exist_ok=True)
    entries = _load_done(out)
    done = {e["name"] for e in entries}
    failed = [{"name": f, "reason": "no partner video (expected NAME_avatar.* and NAME_user.*)"} for f in unpaired]
    for f in failed:
        print(f"avatar-forcing-preprocess: skipped {f['name']}: {f['reason']}", file=sys.stderr)
    for i, name in enumerate(tqdm(sorted(pairs), desc="sessions")):
        if name in done:
            continue
        try:
            session = convert(name, pairs[name], enc)
        except SessionError as err:
            failed.append({"name": name, "reason": str(err)})
            print(f"avatar-forcing-preprocess: skipped {name}: {err}", file=sys.stderr)
            continue
        path = write_session(out, session)
        split = "val" if args.val_every and (i + 1) % args.val_every == 0 else "train"
        entries.append({"name": name, "file": str(path.relative_to(out)), "frames": session.frames, "split": split})
        write_index(out, entries, fps=cfg.fps, dim_w=cfg.dim_w, audio_features=kind, audio_dim=audio_dim,
                    config=cfg.to_dict())
    if not (out / "index.json").is_file():
        write_index(out, entries, fps=cfg.fps, dim_w=cfg.dim_w, audio_features=kind, audio_dim=audio_dim,
                    config=cfg.to_dict())
    report = out / REPORT
    report.with_name(REPORT + ".tmp").write_text(json.dumps({"converted": len(entries), "skipped": failed}, indent=1))
    os.replace(report.with_name(REPORT + ".tmp"), report)
    enc.detector.close()
    log.info("%d sessions in %s, %d skipped (see %s)", len(entries), out, len(failed), report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
