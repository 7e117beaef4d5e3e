"""`avatar-forcing-offline --backend portable`: the offline command with no weights, on a CPU.

The live pipeline's portable parts, run over whole files as fast as the CPU goes:
1. the portrait is framed and rigged once by the mesh renderer (a portrait without a face is
   an error; `--no-crop` keeps the whole image's centre square);
2. the avatar's speech and the user's (`--user-audio`, else the user video's own audio track)
   are read at 16 kHz; T = ceil(longest track * 25) frames, as for the neural backend;
3. the user video is read frame by frame (bounded memory), resampled to 25 fps by nearest
   frame time, and each frame perceived as a live camera frame (MediaPipe face mesh);
4. the behaviour generates 10-frame blocks in order, causally as live (frame n sees inputs up
   to frame n), and each block is rendered and streamed to ffmpeg, which muxes the avatar's
   speech file in (H.264 + AAC).
Absent user inputs (no video, no face, no audio) are the behaviour's null condition.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.portable.behaviour import PortableBackend
from avatar_forcing_ros.portable.behaviour_rules import BehaviourParams
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.tools.media_io import (MediaError, Mp4Writer, has_audio_track,
                                               iter_video_frames, read_audio, read_image)

log = logging.getLogger("avatar_forcing_offline")
NEURAL_ONLY = ("checkpoint_dir", "wav2vec2_dir", "flow_transformer_file", "motion_autoencoder_file", "nfe",
               "a_cfg_scale", "u_cfg_scale")


def neural_only_options(args: argparse.Namespace) -> list[str]:
    """The options given that only the neural backend uses (the portable one refuses them)."""
    return ["--" + name.replace("_", "-") for name in NEURAL_ONLY if getattr(args, name) is not None]


def run(args: argparse.Namespace) -> int:
    """Write the MP4 and log what it took; returns the number of frames.

    Raises MediaError for inputs that cannot be used (the command's exit status 2)."""
    started, cpu_started = time.perf_counter(), _cpu_s()
    backend = PortableBackend(dataclasses.replace(BehaviourParams(), seed=args.seed))
    rate, fps, block = backend.sample_rate, backend.fps, backend.block_frames
    config = RendererConfig(output_size=args.output_size)
    renderer = PortableRenderer(dataclasses.replace(config, framing=None) if args.no_crop else config)
    try:
        renderer.set_portrait(read_image(args.portrait))
    except ValueError as error:             # no face in it: an input the user can change
        raise MediaError(f"portrait {args.portrait}: {error}") from None
    avatar = read_audio(args.avatar_audio, rate)
    user_path = args.user_audio
    if user_path is None and args.user_video is not None and has_audio_track(args.user_video):
        user_path = args.user_video
    user = read_audio(user_path, rate) if user_path is not None else None
    total = math.ceil(max(avatar.size, 0 if user is None else user.size) * fps / rate)
    backend.push_avatar_audio(avatar, 0)
    if user is not None:
        backend.push_user_audio(user, 0)
    frames = _user_frames(args.user_video, fps)          # a bad video fails here, before any output

    writer = Mp4Writer(args.output, args.output_size, fps, args.avatar_audio)
    try:
        for k in tqdm(range(math.ceil(total / block)), desc="portable", unit="block", disable=args.quiet):
            for index in range(k * block, min((k + 1) * block, total)):
                frame = next(frames, None)
                backend.push_user_frame(frame, index)
            latents = backend.generate_block(k, GenerationSettings()).latents[:total - k * block]
            writer.write(renderer.render(latents))
    finally:
        writer.close()
        backend.close()
    seconds = max(writer.frames / fps, 1e-9)
    elapsed, cpu = time.perf_counter() - started, _cpu_s() - cpu_started
    log.info("wrote %s: %d frames (%.2f s) with the avatar audio in %.2f s, %.2f s of CPU with "
             "ffmpeg (real-time factor %.2f wall, %.2f CPU)", args.output, writer.frames, seconds,
             elapsed, cpu, elapsed / seconds, cpu / seconds)
    return writer.frames


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (ffmpeg), all threads: on a shared
    machine the honest measure of what the work costs (wall time depends on the others)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _user_frames(video: Path | None, fps: int) -> Iterator[np.ndarray]:
    """The user's frames at `fps`, the first one decoded now (none without a video; the
    caller's next(frames, None) gives None, "no face in view", past the video's end)."""
    if video is None:
        return iter(())
    frames = iter_video_frames(video, fps)
    return itertools.chain([next(frames)], frames)
