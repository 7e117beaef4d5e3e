"""`avatar-forcing-offline`: portrait + avatar speech (+ user video) -> MP4 of the talking avatar.

    avatar-forcing-offline [--checkpoint-dir pretrained_dir] --portrait face.jpg \
        --avatar-audio speech.wav [--user-video user.mp4] [--user-audio user.wav] -o out.mp4
    avatar-forcing-offline --backend portable --portrait face.jpg --avatar-audio speech.mp3 \
        [--user-video user.mp4] -o out.mp4

`--backend portable` (the default without `--checkpoint-dir`) needs no weights and runs faster
than real time on one CPU core: tools/offline_portable.py. With the neural backend
(`avatar_forcing`, the default with `--checkpoint-dir`), what it does (the reference's offline
inference, through this package's streaming generator):
1. the portrait's face is cropped as the reference does (core/face_crop.py; `--no-crop` for an
   already cropped square portrait) and encoded once (s_r, appearance features, r_s);
2. both audio tracks are encoded whole with wav2vec2 (as the reference does: no sliding window
   offline), T = ceil(longest track * fps / sampling_rate) frames;
3. user video frames are resampled to 25 fps, cropped once around the mean face box, encoded to
   motion latents (replicate-padded or cut to T frames); the user audio is `--user-audio`, else
   the video's own audio track;
4. absent user inputs (no video, no face in it, no audio) are the model's null condition
   (zeros in feature space), never silence or a gray face;
5. blocks of 10 frames are generated (noise seeded by `--seed`), decoded and streamed to
   ffmpeg, which muxes the original avatar audio file in (H.264 + AAC).
Pixel values map [-1, 1] -> [0, 255] linearly (the reference rescales by the clip's min/max).
Exit status: 0 written, 2 bad arguments or input files, 1 other failure.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avatar_forcing_ros.core.audio_encoder import normalize_audio
from avatar_forcing_ros.core.checkpoint import CheckpointError
from avatar_forcing_ros.core.face_crop import (FaceDetector, apply_crop, center_square,
                                               crop_portrait, crop_video, to_model_input,
                                               to_uint8_images)
from avatar_forcing_ros.core.host_memory import release_large_allocations_promptly
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.model_files import resolve_model_files
from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator
from avatar_forcing_ros.tools import offline_portable
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.tools.media_io import (AUDIO_EXTS, IMAGE_EXTS, VIDEO_EXTS, MediaError,
                                               Mp4Writer, check_input, has_audio_track,
                                               read_audio, read_image, read_video_frames)

log = logging.getLogger("avatar_forcing_offline")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Conditions:
    """Everything the generator and decoder need, on the model's device."""

    s_r: torch.Tensor                 # (1, dim_w) portrait appearance code
    feats: list[torch.Tensor]         # appearance feature pyramid
    r_s: torch.Tensor                 # (1, dim_w) portrait identity motion
    avatar_audio: torch.Tensor        # (T, dim_a)
    user_audio: torch.Tensor          # (T, dim_a), zeros when absent
    user_motion: torch.Tensor         # (T, dim_w), zeros when absent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar-forcing-offline",
                                description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--backend", choices=("avatar_forcing", "portable"), default=None,
                   help="'portable': no weights, faster than real time on one CPU core; "
                        "'avatar_forcing': the neural model (default: it when a model file option "
                        "is given, else portable)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="neural backend: the release folder (flow_transformer.pth, "
                        "motion_autoencoder.pth, wav2vec2-base-960h/, optional config.json); "
                        "default: the folder avatar-forcing-fetch downloads into")
    p.add_argument("--wav2vec2-dir", default=None,
                   help="neural backend: transformers wav2vec2 folder (wav2vec2-base-960h); "
                        "default: inside the checkpoint folder")
    p.add_argument("--flow-transformer-file", default=None,
                   help="neural backend: flow_transformer checkpoint (default: inside the checkpoint folder)")
    p.add_argument("--motion-autoencoder-file", default=None,
                   help="neural backend: motion_autoencoder checkpoint (default: inside the checkpoint folder)")
    p.add_argument("--portrait", type=Path, required=True, help="portrait image")
    p.add_argument("--avatar-audio", type=Path, required=True, help="avatar speech (audio file)")
    p.add_argument("--user-video", type=Path, help="user video (optional)")
    p.add_argument("--user-audio", type=Path, help="user audio (default: the user video's track)")
    p.add_argument("-o", "--output", type=Path, required=True, help="MP4 file to write")
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--nfe", type=int, default=None, help="function evaluations (default: config)")
    p.add_argument("--a-cfg-scale", type=float, default=None, help="avatar-audio guidance scale")
    p.add_argument("--u-cfg-scale", type=float, default=None, help="user guidance scale")
    p.add_argument("--pad-ratio", type=float, default=1.0, help="face crop padding ratio")
    p.add_argument("--no-crop", action="store_true", help="portrait is already a cropped square")
    p.add_argument("--output-size", type=int, default=512,
                   help="portable backend: side of the square video (the neural one: the model's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _check_paths(args: argparse.Namespace) -> None:
    check_input(args.portrait, "portrait image", IMAGE_EXTS)
    check_input(args.avatar_audio, "avatar audio", AUDIO_EXTS + VIDEO_EXTS)
    if args.user_video is not None:
        check_input(args.user_video, "user video", VIDEO_EXTS)
    if args.user_audio is not None:
        check_input(args.user_audio, "user audio", AUDIO_EXTS + VIDEO_EXTS)
    if args.output.suffix.lower() != ".mp4":
        raise MediaError(f"output must be an .mp4 file, got {args.output}")
    if args.backend == "portable":
        given = offline_portable.neural_only_options(args)
        if given:
            raise MediaError(f"{', '.join(given)}: only for --backend avatar_forcing")
        if not 64 <= args.output_size <= 4096:
            raise MediaError(f"--output-size must be in [64, 4096], got {args.output_size}")


def _portrait(model: AvatarForcing, args: argparse.Namespace, detector: FaceDetector):
    size = model.cfg.input_size
    image = read_image(args.portrait)
    face = None if args.no_crop else crop_portrait(image, size, args.pad_ratio, detector)
    if face is None:
        if not args.no_crop:
            log.warning("no face found in %s; using the centred square", args.portrait)
        face = apply_crop(image, center_square(image.shape[:2]), size)
    p = next(model.parameters())
    return model.encode_portrait(to_model_input(face).to(p.device, p.dtype))


def _user_motion(model: AvatarForcing, args: argparse.Namespace, frames_total: int,
                 detector: FaceDetector) -> torch.Tensor:
    p = next(model.parameters())
    zeros = torch.zeros(frames_total, model.cfg.dim_w, device=p.device, dtype=p.dtype)
    if args.user_video is None:
        return zeros
    frames = read_video_frames(args.user_video, model.cfg.fps)
    crops = crop_video(frames, model.cfg.input_size, args.pad_ratio, detector)
    if crops is None:
        log.warning("no face in %s: the user motion is absent (null condition)", args.user_video)
        return zeros
    with torch.inference_mode():
        motion = model.motion_autoencoder.encode_motion(to_model_input(crops).to(p.device, p.dtype))
    if motion.shape[0] < frames_total:
        motion = torch.cat([motion, motion[-1:].expand(frames_total - motion.shape[0], -1)])
    return motion[:frames_total]


def prepare(model: AvatarForcing, args: argparse.Namespace) -> Conditions:
    """Read and encode every input (see the module docstring)."""
    cfg = model.cfg
    p = next(model.parameters())
    avatar = read_audio(args.avatar_audio, cfg.sampling_rate)
    user_path = args.user_audio
    if user_path is None and args.user_video is not None and has_audio_track(args.user_video):
        user_path = args.user_video
    user = read_audio(user_path, cfg.sampling_rate) if user_path is not None else None
    total = math.ceil(max(avatar.size, 0 if user is None else user.size) * cfg.fps / cfg.sampling_rate)

    def encode(samples: np.ndarray) -> torch.Tensor:
        audio = torch.from_numpy(normalize_audio(samples))[None].to(p.device, p.dtype)
        with torch.inference_mode():
            return model.audio_encoder.encode(audio, total)[0]            # (T, dim_a)

    with FaceDetector() as detector:
        s_r, r_s, feats = _portrait(model, args, detector)
        motion = _user_motion(model, args, total, detector)
    avatar_feats = encode(avatar)
    user_feats = encode(user) if user is not None else torch.zeros_like(avatar_feats)
    return Conditions(s_r, feats, r_s, avatar_feats, user_feats, motion)


def generate(model: AvatarForcing, cond: Conditions, args: argparse.Namespace) -> torch.Tensor:
    """Motion latents (T, dim_w), one 10-frame block at a time."""
    total = cond.avatar_audio.shape[0]
    gen = StreamingGenerator(model.flow_transformer, cond.r_s, NoiseSource(seed=args.seed))
    gen.push_avatar_audio(0, cond.avatar_audio)
    gen.push_user_audio(0, cond.user_audio)
    gen.push_user_motion(0, cond.user_motion)
    gen.end_stream(total)
    blocks = math.ceil(total / model.cfg.num_frames_per_block)
    out = [gen.generate_block(k, nfe=args.nfe, a_scale=args.a_cfg_scale, u_scale=args.u_cfg_scale)
           for k in tqdm(range(blocks), desc="generating", unit="block", disable=args.quiet)]
    return torch.cat(out)


def write_video(model: AvatarForcing, cond: Conditions, r_d: torch.Tensor,
                args: argparse.Namespace) -> int:
    """Decode the latents block by block into the MP4; returns the number of frames."""
    size, block = model.cfg.input_size, model.cfg.num_frames_per_block
    writer = Mp4Writer(args.output, size, model.cfg.fps, args.avatar_audio)
    try:
        for start in tqdm(range(0, r_d.shape[0], block), desc="rendering", unit="block",
                          disable=args.quiet):
            with torch.inference_mode():
                images = model.motion_autoencoder.decode(cond.s_r, cond.feats, r_d[start:start + block])
            writer.write(to_uint8_images(images))
    finally:
        writer.close()
    return writer.frames


@interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.backend is None:   # portable unless a model file is named (neural: the fetch folder by default)
        model_options = (args.checkpoint_dir, args.wav2vec2_dir, args.flow_transformer_file,
                         args.motion_autoencoder_file)
        args.backend = "avatar_forcing" if any(o is not None for o in model_options) else "portable"
    try:
        _check_paths(args)
        if args.backend == "portable":
            offline_portable.run(args)
            return 0
        files = resolve_model_files(*(str(option or "") for option in (
            args.checkpoint_dir, args.wav2vec2_dir, args.flow_transformer_file,
            args.motion_autoencoder_file)))
        release_large_allocations_promptly()     # whole-clip transients must not stay resident
        model = AvatarForcing.from_files(files, device=args.device, dtype=_DTYPES[args.dtype])
        cond = prepare(model, args)
        r_d = generate(model, cond, args)
        frames = write_video(model, cond, r_d, args)
    except (MediaError, CheckpointError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    except (ValueError, RuntimeError) as err:
        log.error("failed: %s", err)
        return 1
    log.info("wrote %s: %d frames (%.2f s) with the avatar audio", args.output, frames,
             frames / model.cfg.fps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
