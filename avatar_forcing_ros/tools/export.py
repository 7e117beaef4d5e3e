"""avatar-forcing-export: write the model's ONNX graphs (core/onnx_export.py) and, with
--tensorrt, build TensorRT fp16 engines from them (core/tensorrt_engines.py).

    avatar-forcing-export --out graphs/                       # the fetch folder's model
    avatar-forcing-export --checkpoint-dir pretrained_dir --out graphs/ --tensorrt

The nodes run the graphs with `runtime: onnxruntime` and `onnx_dir: graphs/`.
"""
from __future__ import annotations

import argparse
import logging
import time

from avatar_forcing_ros.core.checkpoint import CheckpointError
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.model_files import resolve_model_files
from avatar_forcing_ros.tools.interrupt import interruptible

log = logging.getLogger("avatar-forcing-export")
PARTS = ("block", "decoder", "encoder", "audio")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-forcing-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the .onnx graphs (and engines) into")
    parser.add_argument("--checkpoint-dir", default="", help="release folder (default: the fetch folder)")
    parser.add_argument("--wav2vec2-dir", default="", help="wav2vec2-base-960h folder (default: in the release)")
    parser.add_argument("--flow-transformer-file", default="", help="explicit flow_transformer checkpoint")
    parser.add_argument("--motion-autoencoder-file", default="", help="explicit motion_autoencoder checkpoint")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="also build fp16 TensorRT engines (.engine) with the tensorrt Python package")
    return parser


@interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        log.error("unknown --parts %s; choose from %s", ",".join(unknown), ",".join(PARTS))
        return 2
    try:
        if args.tensorrt:     # fail before the (long) export when TensorRT is absent
            from avatar_forcing_ros.core.tensorrt_engines import require_tensorrt
            require_tensorrt()
        from avatar_forcing_ros.core.onnx_export import export_all
        files = resolve_model_files(args.checkpoint_dir, args.wav2vec2_dir, args.flow_transformer_file,
                                    args.motion_autoencoder_file)
        model = AvatarForcing.from_files(files)
        start = time.monotonic()
        paths = export_all(model, args.out, parts)
        log.info("wrote %d graphs into %s in %.0f s", len(paths), args.out, time.monotonic() - start)
        if args.tensorrt:
            from avatar_forcing_ros.core.tensorrt_engines import build_engines
            engines = build_engines(paths)
            log.info("built %d TensorRT fp16 engines", len(engines))
    except (CheckpointError, FileNotFoundError, ImportError) as err:
        log.error("%s", err)
        return 2
    except (ValueError, RuntimeError) as err:
        log.error("failed: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
