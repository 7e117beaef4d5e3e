"""Reading, checking and writing weight files (`.pth`/`.pt`/`.bin` and `.safetensors`).

- `load_weights_file(path)` returns a flat {name: tensor} dict. Pickle-based files are read
  with `torch.load(weights_only=True)`: a file that would need to run code (any pickled object
  other than tensors and plain containers) is refused before anything runs. Zip-format files
  are memory-mapped, so loading them does not make a second in-memory copy. Files that are no
  weights file at all (text, an HTML error page, a Git LFS pointer) are named as such.
- `apply_weights(module, state, prefix)` checks the file against the module first and refuses
  a mismatch with one `CheckpointMismatchError` that names every missing, unexpected,
  mis-shaped and mis-typed (non-floating for a floating parameter) key. Modules whose
  parameters live on the meta device (built with `parameters_on_meta()`) take the file's
  tensors as their parameters (assign semantics).
- `save_weights_file(state, path)` writes either format.

The release files are flat dicts whose keys are `AvatarForcing.named_parameters()` names
(`motion_autoencoder.*`, `flow_transformer.*`, `audio_encoder.audio_projection.*`); the
reference loader reads them as they are. Files saved as {"state_dict": {...}} or
{"model": {...}} are unwrapped too.
"""
from __future__ import annotations

import contextlib
import fnmatch
import logging
import mmap
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
_WRAPPER_KEYS = ("state_dict", "model")
_LIST_LIMIT = 20
_LFS_POINTER = b"version https://git-lfs"     # first bytes of a Git LFS pointer file
_ZIP_MAGIC = b"PK\x03\x04"                     # first bytes of torch's (zip) format


class CheckpointError(ValueError):
    """A weights file that cannot be used (unsupported, unsafe or malformed)."""


class CheckpointMismatchError(CheckpointError):
    """The file's keys, shapes or dtypes do not fit the module; attributes list the offenders."""

    def __init__(self, where: str, missing: list[str], unexpected: list[str],
                 mis_shaped: list[tuple[str, tuple, tuple]],
                 mis_typed: list[tuple[str, torch.dtype, torch.dtype]] | None = None):
        self.missing, self.unexpected, self.mis_shaped = missing, unexpected, mis_shaped
        self.mis_typed = mis_typed or []
        parts = [f"weights do not fit {where}:"]
        if missing:
            parts.append(_listing(f"{len(missing)} missing key(s)", missing))
        if unexpected:
            parts.append(_listing(f"{len(unexpected)} unexpected key(s)", unexpected))
        if mis_shaped:
            rows = [f"{k}: file {list(f)} vs model {list(m)}" for k, f, m in mis_shaped]
            parts.append(_listing(f"{len(mis_shaped)} mis-shaped key(s)", rows))
        if self.mis_typed:
            rows = [f"{k}: file {f} vs model {m}" for k, f, m in self.mis_typed]
            parts.append(_listing(f"{len(self.mis_typed)} non-floating key(s) for floating "
                                  f"parameters", rows))
        super().__init__("\n".join(parts))


def _listing(title: str, rows: list[str]) -> str:
    shown = "\n".join(f"    {r}" for r in rows[:_LIST_LIMIT])
    more = f"\n    ... and {len(rows) - _LIST_LIMIT} more" if len(rows) > _LIST_LIMIT else ""
    return f"  {title}:\n{shown}{more}"


# ---- reading -------------------------------------------------------------------------------
def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat {name: tensor} dict on the CPU.

    Raises FileNotFoundError if absent, CheckpointError if the suffix is unsupported, the file
    holds anything but tensors (e.g. a pickle that would run code: refused, never executed),
    or it is not a valid file of its format (e.g. a Git LFS pointer or a downloaded web page).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    with path.open("rb") as f:
        head = f.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:            # a clone without `git lfs pull`: the commonest bad file
        raise CheckpointError(f"{path} is not a PyTorch/safetensors weights file but a Git LFS "
                              f"pointer: fetch the real file (`git lfs pull`)")
    if suffix == SAFETENSORS_SUFFIX:
        state = _load_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        state = _load_pickle(path)
    else:
        raise CheckpointError(f"unsupported weights file type '{suffix}' ({path}); expected "
                              f"{SAFETENSORS_SUFFIX} or one of {', '.join(PICKLE_SUFFIXES)}")
    return _as_flat_tensor_dict(state, path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise CheckpointError(f"not a valid safetensors file: {path} ({exc})") from exc


def _load_pickle(path: Path) -> object:
    with path.open("rb") as f:
        head = f.read(16)
    # A damaged zip (e.g. truncated) still goes to torch.load, which reports it as corrupt.
    if not head.startswith(_ZIP_MAGIC) and not _starts_with_a_pickle(path):
        content = f"it starts with {head!r}" if head else "it is empty"
        raise CheckpointError(f"{path} is not a PyTorch/safetensors weights file (neither a "
                              f"torch zip archive nor a pickle; {content})")
    use_mmap = zipfile.is_zipfile(path)         # only the zip format can be memory-mapped
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        reason = [ln for ln in str(exc).splitlines() if "GLOBAL" in ln or "global" in ln]
        raise CheckpointError(
            f"refused to load {path}: it is not a plain weights file (it contains pickled "
            f"Python objects that would have to run code; nothing was executed). "
            f"{reason[0].strip() if reason else ''}") from exc
    except (RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read {path} as a torch weights file: {exc}") from exc


def _starts_with_a_pickle(path: Path) -> bool:
    """Whether the file opens with a complete pickle (torch's legacy format opens with one).

    pickletools only parses the opcodes and runs nothing. Text, web pages and random bytes fail
    here, so they are not reported as pickles that would run code. The file is memory-mapped
    because a length read from junk bytes may be huge: mmap.read never allocates beyond the end.
    """
    if path.stat().st_size == 0:                # (an empty file cannot be mapped)
        return False
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            for _ in pickletools.genops(data):  # stops after the first STOP opcode
                pass
        except ValueError:                      # unknown opcode, bad argument or truncated
            return False
    return True


def _as_flat_tensor_dict(state: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        wrapped = [k for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)]
        if wrapped:                             # {"state_dict": {...}, "epoch": 3, ...}
            state = state[wrapped[0]]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} does not hold a dict of tensors (got {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} holds non-tensor entries: {bad[:_LIST_LIMIT]}")
    return dict(state)


# ---- writing -------------------------------------------------------------------------------
def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path,
                     metadata: dict[str, str] | None = None) -> None:
    """Write a `.safetensors` file created like any other file (mode 0666 minus the umask, 0644 usually).

    safetensors' own `save_file` writes through a private temporary file and leaves the result
    0600, unreadable to the group that shares a run folder; the bytes are the same.
    """
    from safetensors.torch import save
    Path(path).write_bytes(save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def save_weights_file(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write `state` as `.safetensors` or as a torch zip file (`.pth`/`.pt`/`.bin`/`.ckpt`)."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        save_safetensors({k: v.clone() for k, v in tensors.items()}, path)   # clone: no shared storage
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        torch.save(tensors, path)
    else:
        raise CheckpointError(f"unsupported weights file type '{path.suffix}' ({path})")


# ---- applying ------------------------------------------------------------------------------
def select_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries whose key starts with `prefix`, with the prefix removed ('' keeps everything)."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def apply_weights(module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str = "",
                  ignore: Iterable[str] = (), where: str | None = None) -> None:
    """Load `state` (keys `prefix` + module key) into `module`, refusing any mismatch.

    - Keys of `state` outside `prefix` are not looked at; keys matching an `ignore` glob
      (relative to the prefix) are skipped.
    - Every parameter and persistent buffer must be present with its exact shape, except
      persistent buffers that the constructor already built (non-meta: e.g. FIR kernels,
      masks); if the file has them they are checked and loaded too.
    - Parameters on the meta device are *replaced* by the file's tensors (no copy); others, and
      the buffers the constructor built, are copied in place (keeping the module's device and
      dtype): a buffer assigned from a memory-mapped file would keep the whole file mapped after
      the parameters were cast to another dtype.
    - A floating parameter or buffer must come as a floating tensor (any float dtype).
    Raises CheckpointMismatchError naming all missing, unexpected, mis-shaped and mis-typed keys.
    """
    ignore = tuple(ignore)
    sub = {k: v for k, v in select_prefix(state, prefix).items()
           if not any(fnmatch.fnmatchcase(k, pat) for pat in ignore)}
    expected = module.state_dict(keep_vars=True)
    buffers = {name for name, _ in _persistent_buffers(module)}
    missing = [k for k, t in expected.items()
               if k not in sub and not (k in buffers and not t.is_meta)]
    unexpected = sorted(k for k in sub if k not in expected)
    mis_shaped = [(k, tuple(sub[k].shape), tuple(t.shape)) for k, t in expected.items()
                  if k in sub and tuple(sub[k].shape) != tuple(t.shape)]
    # An integer or bool tensor would be silently cast by copy_ and cannot become a parameter
    # by assignment: refuse it rather than load numbers of the wrong kind.
    mis_typed = [(k, sub[k].dtype, t.dtype) for k, t in expected.items()
                 if k in sub and t.is_floating_point() and not sub[k].is_floating_point()]
    if missing or unexpected or mis_shaped or mis_typed:
        raise CheckpointMismatchError(where or f"{type(module).__name__} (prefix '{prefix}')",
                                      [prefix + k for k in missing],
                                      [prefix + k for k in unexpected],
                                      [(prefix + k, f, m) for k, f, m in mis_shaped],
                                      [(prefix + k, f, m) for k, f, m in mis_typed])
    prebuilt = {k for k in buffers if k in sub and not expected[k].is_meta}
    assign = any(p.is_meta for p in module.parameters())
    result = module.load_state_dict({k: v for k, v in sub.items() if k not in prebuilt}, strict=False,
                                    assign=assign)
    assert not result.unexpected_keys, result.unexpected_keys
    with torch.no_grad():
        for k in prebuilt:
            expected[k].copy_(sub[k])


def _persistent_buffers(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    for mod_name, mod in module.named_modules():
        for name, buf in mod.named_buffers(recurse=False):
            if buf is not None and name not in mod._non_persistent_buffers_set:
                yield (f"{mod_name}.{name}" if mod_name else name), buf


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules whose *parameters* are on the meta device while buffers stay real.

    Parameters then take no memory until `apply_weights` assigns the file's tensors; buffers
    that constructors compute (FIR kernels, masks) keep their values. Each parameter is
    created normally and moved to meta at once, so peak extra memory is one tensor.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original
