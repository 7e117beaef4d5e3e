"""How far are live (sliding-window) audio features from whole-track features?

For each window length, the stream is replayed block by block as a live generator sees it:
before block k (frames [10k, 10k+10)) the audio up to frame 10k+10+ahead has arrived, and the
block's 10 frames are read from a window ending at the newest sample
(SlidingWindowAudioEncoder). They are compared with whole-track encoding (the reference):

  rel   = ||F_live - F_track|| / ||F_track||   over all frames (Frobenius)
  cos   = mean per-frame cosine similarity
  ms    = median time of one window encode (CPU, threads as set)

Columns "context": audio already normalised over the whole track (isolates the missing
context); "live": raw audio with the running normalisation (the real pipeline).
Models: the parity-tiny wav2vec2 + projection (test/fixtures/parity/tiny) and a randomly
initialised wav2vec2-base (Wav2Vec2Config(), seed 0) with the official projection size.
Audio: espeak-ng speech (first --seconds, default 12 s), or a synthetic vowel train without it.

Usage: PYTHONPATH=. python bench/audio_window_study.py [--windows 0.4 0.8 1.2 2 3 4] [--ahead 0 10]
       [--seconds 12] [--models tiny base]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from transformers import Wav2Vec2Config

from avatar_forcing_ros.core.audio_encoder import AudioEncoder, normalize_audio
from avatar_forcing_ros.core.audio_window import SlidingWindowAudioEncoder
from avatar_forcing_ros.core.checkpoint import apply_weights, load_weights_file
from avatar_forcing_ros.core.config import official, parity_tiny
from avatar_forcing_ros.tools.interrupt import interruptible

TINY = Path(__file__).resolve().parents[1] / "test" / "fixtures" / "parity" / "tiny"
TEXT = ("Hello, I am the avatar of this robot. I can listen to you and answer in real time. "
        "Tell me about your day, and I will nod while you speak. The weather was lovely this "
        "morning, but it might rain later. Would you like to hear a short story? Once upon a "
        "time, a small robot learned to smile. It practised every day in front of a mirror.")


def speech(sr: int = 16000) -> np.ndarray:
    """~25 s of espeak-ng speech at `sr`, or a synthetic syllable train if espeak-ng is absent."""
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "s.wav"
            subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), TEXT], check=True)
            x, rate = sf.read(wav, dtype="float32")
        return resample_poly(x, sr, rate).astype(np.float32)
    t = np.arange(15 * sr) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
    return (0.3 * env * np.sin(2 * np.pi * np.cumsum(f0) / sr)).astype(np.float32)


def tiny_encoder() -> AudioEncoder:
    enc = AudioEncoder.from_folder(parity_tiny(), TINY / "wav2vec2")
    apply_weights(enc.audio_projection, load_weights_file(TINY / "flow_transformer.safetensors"),
                  prefix="audio_encoder.audio_projection.")
    return enc.eval()


def base_encoder() -> AudioEncoder:
    torch.manual_seed(0)
    return AudioEncoder(official(), Wav2Vec2Config()).eval()


def replay(enc: AudioEncoder, audio: np.ndarray, window_s: float, ahead: int,
           normalize: bool) -> tuple[torch.Tensor, list[float]]:
    """Live features of every frame (1, T, D) and the time of each window encode."""
    spf, block = enc.cfg.samples_per_frame, enc.cfg.num_frames_per_block
    total = len(audio) // spf
    live = SlidingWindowAudioEncoder(enc, window_s, normalize=normalize)
    rows, times = [], []
    for t in range(0, total - block + 1, block):
        upto = min(total, t + block + ahead) * spf
        live.push(audio[live.samples_received:upto])
        t0 = time.perf_counter()
        rows.append(live.features(t, t + block))
        times.append(time.perf_counter() - t0)
    return torch.cat(rows, dim=1), times


def compare(live: torch.Tensor, track: torch.Tensor) -> tuple[float, float]:
    ref = track[:, :live.shape[1]]
    rel = (live - ref).norm() / ref.norm()
    cos = torch.nn.functional.cosine_similarity(live, ref, dim=-1).mean()
    return rel.item(), cos.item()


def study(name: str, enc: AudioEncoder, raw: np.ndarray, windows: list[float], ahead: int,
          with_context: bool = True) -> None:
    spf = enc.cfg.samples_per_frame
    raw = raw[: len(raw) // spf * spf]
    normed = normalize_audio(raw)
    with torch.inference_mode():
        track = enc.encode(torch.from_numpy(normed)[None], len(raw) // spf)
    print(f"\n{name}: {len(raw) / enc.cfg.sampling_rate:.1f} s audio, audio ahead of the "
          f"block end: {ahead} frames")
    print("| window s | context rel | context cos | live rel | live cos | encode ms |")
    print("|---|---|---|---|---|---|")
    for w in windows:
        lv, times = replay(enc, raw, w, ahead, normalize=True)
        lr, lc = compare(lv, track)
        cr, cc = (float("nan"),) * 2
        if with_context:
            cr, cc = compare(replay(enc, normed, w, ahead, normalize=False)[0], track)
        print(f"| {w:g} | {cr:.4f} | {cc:.4f} | {lr:.4f} | {lc:.4f} | "
              f"{1000 * float(np.median(times)):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=float, nargs="+", default=[0.4, 0.8, 1.2, 2.0, 3.0, 4.0])
    ap.add_argument("--ahead", type=int, nargs="+", default=[0, 10])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the speech used")
    ap.add_argument("--no-context", action="store_true", help="only the live column (faster)")
    ap.add_argument("--models", nargs="+", choices=["tiny", "base"], default=["tiny", "base"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    raw = speech()[: int(args.seconds * 16000)]
    builders = {"tiny": ("parity-tiny wav2vec2", tiny_encoder),
                "base": ("random wav2vec2-base", base_encoder)}
    for key in args.models:
        name, build = builders[key]
        enc = build()
        for ahead in args.ahead:
            study(name, enc, raw, args.windows, ahead, not args.no_context)


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
