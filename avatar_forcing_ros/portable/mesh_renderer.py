"""PortableRenderer: animates a real portrait photograph in the portable face-parameter space.

Pipeline per frame (all set-up work happens once in ``set_portrait``):

1. ``FaceRig.deform``: face parameters -> moved mesh vertices (478 landmarks + anchor rings +
   fixed border points; expressions as linear bases, head pose as a 2.5D rotation);
2. ``MeshWarp.warp``: vertex displacements -> dense displacement field through precomputed
   barycentric weights (half resolution, upsampled) -> one cv2.remap of the portrait; the
   border anchors hold the background still and the rings make the motion fade out, so the
   face never tears from the background;
3. ``MouthInterior.paint``: where the lips part further than in the photograph, a dark cavity
   with a tongue and lower teeth that follow the jaw, upper teeth (the photograph's own when it
   shows them, else a synthetic row) that stay with the upper lip, and the lower lip's red
   inner side;
4. ``Eyelids.paint``: from a tenth of a blink, an opaque lid down to the moved lid margin with a
   soft lash line (the warp has already slid the upper lid down onto the lower one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avatar_forcing_ros.backends.base import FrameRenderer
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.eyelids import Eyelids
from avatar_forcing_ros.portable.face_rig import FaceRig, RigConfig
from avatar_forcing_ros.portable.mesh_warp import MeshWarp
from avatar_forcing_ros.portable.mouth_interior import MouthInterior
from avatar_forcing_ros.portable.portrait import frame_face


@dataclass(frozen=True)
class RendererConfig:
    """Output framing and quality knobs."""

    output_size: int = 512               # output images are (output_size, output_size, 3)
    framing: float | None = 2.6          # crop side in face heights; None: whole image (centre square)
    field_scale: float = 0.5             # resolution of the displacement field relative to the output
    rig: RigConfig = field(default_factory=RigConfig)


class PortableRenderer(FrameRenderer):
    """Portrait + face parameters -> RGB frames, in real time on one CPU core."""

    latent_space = ms.LATENT_SPACE
    latent_dim = ms.DIM

    def __init__(self, config: RendererConfig = RendererConfig(), portrait: np.ndarray | None = None):
        if config.output_size < 64:
            raise ValueError(f"output_size must be >= 64, got {config.output_size}")
        self.config = config
        self.image: np.ndarray | None = None     # the framed portrait, (S, S, 3) uint8
        self.rig: FaceRig | None = None
        if portrait is not None:
            self.set_portrait(portrait)

    @classmethod
    def from_options(cls, *, output_size: int = 512, **_ignored: object) -> "PortableRenderer":
        """Factory used by backends/registry.py (BackendOptions fields as keywords)."""
        return cls(RendererConfig(output_size=output_size))

    def set_portrait(self, portrait_rgb: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        """Frame the portrait around its face and build the rig, warp and mouth painter.

        ``landmarks`` (478, 3) in the portrait's pixels skip detection when already known.
        Raises ValueError when the image is not (H, W, 3) uint8 or shows no face.
        """
        portrait = np.asarray(portrait_rgb)
        if portrait.ndim != 3 or portrait.shape[2] != 3 or portrait.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB portrait, got {portrait.shape} {portrait.dtype}")
        if landmarks is None:
            from avatar_forcing_ros.portable.perception import detect_portrait_landmarks

            landmarks = detect_portrait_landmarks(portrait)
        size = self.config.output_size
        image, points = frame_face(portrait, np.asarray(landmarks, dtype=np.float32), size,
                                   self.config.framing)
        rig = FaceRig(points, size, self.config.rig)
        self.warp = MeshWarp(rig.vertices[:, :2], size, self.config.field_scale)
        self.mouth = MouthInterior(image, points, rig.scale)
        self.eyelids = Eyelids(image, points)
        self.image, self.rig, self.landmarks = image, rig, points

    def render_frame(self, params: np.ndarray) -> np.ndarray:
        """(DIM,) face parameters (clipped to their ranges) -> (S, S, 3) uint8 RGB."""
        if self.rig is None or self.image is None:
            raise RuntimeError("call set_portrait() before rendering")
        params = ms.clip(params)
        moved = self.rig.deform(params)                              # (N, 2)
        frame = self.warp.warp(self.image, moved - self.rig.vertices[:, :2])
        self.mouth.paint(frame, moved)
        self.eyelids.paint(frame, moved, params)
        return frame

    def render(self, latents: np.ndarray) -> np.ndarray:
        """(N, DIM) float32 face parameters -> (N, S, S, 3) uint8 RGB images."""
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != ms.DIM:
            raise ValueError(f"expected (N, {ms.DIM}) latents of space {ms.LATENT_SPACE!r}, got {latents.shape}")
        if not np.all(np.isfinite(latents)):
            raise ValueError("latents contain NaN or infinity")
        size = self.config.output_size
        frames = np.empty((len(latents), size, size, 3), dtype=np.uint8)
        for i, params in enumerate(latents):
            frames[i] = self.render_frame(params)
        return frames
