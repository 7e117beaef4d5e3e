"""The generator's settings as a plain object (read from ROS parameters by the node, handed to
the core), with the checks that make a bad value fail at start-up with a clear message.
"""
from __future__ import annotations

from dataclasses import dataclass

VALID_DTYPES = ("float32", "float16", "bfloat16")
VALID_WEIGHT_STORAGE = ("auto", "float32", "float16")


@dataclass(frozen=True)
class GeneratorConfig:
    backend: str = "portable"              # registry name: 'portable' or 'avatar_forcing'
    checkpoint_dir: str = ""               # neural backend: release folder (empty = the fetch folder)
    wav2vec2_dir: str = ""                 # neural backend: wav2vec2-base-960h (empty = in checkpoint_dir)
    flow_transformer_file: str = ""        # neural backend: explicit checkpoint (empty = in checkpoint_dir)
    motion_autoencoder_file: str = ""      # neural backend: explicit checkpoint (empty = in checkpoint_dir)
    portrait: str = ""                     # avatar identity image (frame_id of MotionLatent = its stem)
    device: str = "cpu"
    dtype: str = "float32"
    weight_storage: str = "auto"           # neural backend: float16 keeps the big matrices at half size
                                           # (auto: float16 on a CPU at float32 with runtime eager)
    runtime: str = "eager"                 # neural backend: eager|compile|cuda_graphs|onnxruntime (core/runtime.py)
    onnx_dir: str = ""                     # neural backend, runtime onnxruntime: avatar-forcing-export's folder
    seed: int = 0
    nfe: int = 10                          # NFE at full quality (within the backend's nfe_range)
    nfe_min: int = 4                       # the controller never goes below this
    nfe_step: int = 2                      # NFE removed per controller step
    avatar_audio_guidance: float = 2.0
    user_guidance: float = 1.0
    latency_budget_ms: float = 800.0       # media time -> publication target
    camera_timeout_s: float = 0.5          # staleness timeouts: older input = absent (null condition)
    user_audio_timeout_s: float = 0.5
    avatar_audio_timeout_s: float = 0.5
    use_camera: bool = True
    use_user_audio: bool = True
    use_avatar_audio: bool = True
    input_queue_size: int = 256            # bounded callback -> worker queue (messages)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (backend-independent checks: NFE bounds
        are the backend's, checked by `check_nfe` once it is known)."""
        if not self.backend:
            raise ValueError("backend must name a backend, e.g. 'portable' or 'avatar_forcing'")
        if self.dtype not in VALID_DTYPES:
            raise ValueError(f"dtype must be one of {VALID_DTYPES}, got {self.dtype!r}")
        if self.weight_storage not in VALID_WEIGHT_STORAGE:
            raise ValueError(f"weight_storage must be one of {VALID_WEIGHT_STORAGE}, got {self.weight_storage!r}")
        if self.nfe_step < 1:
            raise ValueError(f"nfe_step must be >= 1, got {self.nfe_step}")
        check_guidance("avatar_audio_guidance", self.avatar_audio_guidance)
        check_guidance("user_guidance", self.user_guidance)
        for name in ("camera_timeout_s", "user_audio_timeout_s", "avatar_audio_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.input_queue_size < 1:
            raise ValueError(f"input_queue_size must be >= 1, got {self.input_queue_size}")


def check_nfe(nfe: int, nfe_min: int, nfe_range: tuple[int, int] | None) -> None:
    """ValueError unless lowest <= nfe_min <= nfe <= highest of the backend's `nfe_range`
    (MotionBackend.nfe_range); a backend without NFE (None) ignores both values."""
    if nfe_range is None:
        return
    low, high = nfe_range
    if not low <= nfe_min <= nfe <= high:
        raise ValueError(f"need {low} <= nfe_min <= nfe <= {high} (the backend's NFE range), "
                         f"got nfe={nfe}, nfe_min={nfe_min}")


def check_guidance(name: str, scale: float) -> None:
    if not 0.0 <= scale <= 20.0:
        raise ValueError(f"{name} must be in [0, 20], got {scale}")


def check_latency_budget(budget_ms: float, block_frames: int, lookahead_frames: int, fps: int) -> None:
    """The budget must leave compute time after a block's conditions (block + look-ahead) arrive."""
    wait_ms = 1000.0 * (block_frames + lookahead_frames) / fps
    low = wait_ms + 1000.0 / fps     # + one frame period: half for the timer's tolerance, half for compute
    if not low <= budget_ms <= 10000.0:
        raise ValueError(
            f"latency_budget_ms={budget_ms:g} must be in [{low:g}, 10000]: a block's conditions "
            f"take {wait_ms:g} ms of media to arrive ({block_frames} frames + {lookahead_frames} look-ahead "
            f"at {fps} fps) and compute needs time after that")
