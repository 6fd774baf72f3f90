"""Two SAEs' directions by name, without a model: the decoder rows and encoder columns `vista match` compares.

An SAE is named as a map's provenance names it (`HarvestConfig.sae_description`): the folder
sae-lens saved (`--sae-path`), or "RELEASE/SAE_ID" from sae-lens's pretrained directory (downloaded
unless the hub is off: `--offline` or HF_HUB_OFFLINE). Both SAEs' widths are read from their
configs first, so that two SAEs of different models or hooks are one line before any weight loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.models import ModelError, load_sae, read_sae_shape
from vista_tui.mapdata import SaeRef


@dataclass(frozen=True)
class SaeSource:
    """Where an SAE named on the command line comes from: a folder, or a release and an id."""

    name: str
    """The name as the match table records it: a folder as an absolute path, a release/id as given."""
    path: str | None = None
    release: str | None = None
    sae_id: str | None = None

    def kwargs(self) -> dict[str, str | None]:
        """The keyword arguments of `load_sae` and `read_sae_shape`."""
        return {"sae_release": self.release, "sae_id": self.sae_id, "sae_path": self.path}


@dataclass
class Directions:
    """One SAE's latents as directions in its input space."""

    ref: SaeRef
    decoder: Any
    """(d_sae, d_in) torch tensor: what each latent writes (W_dec)."""
    encoder: Any
    """(d_sae, d_in) torch tensor: what each latent reads (W_enc transposed)."""


def sae_source(name: str) -> SaeSource:
    """Parse an SAE's name: an existing folder, else RELEASE/SAE_ID (split at the first "/"); a missing
    folder or a name with no "/" is a ModelError."""
    text = str(name).strip()
    path = Path(text).expanduser()
    if text and path.is_dir():
        return SaeSource(name=str(path.resolve()), path=str(path))
    if text.startswith(("/", "./", "../", "~", ".\\")) or not text:
        raise ModelError(
            f"SAE directory {text or repr(text)} does not exist; name an SAE by the folder sae-lens saved "
            "(cfg.json and sae_weights.safetensors) or by RELEASE/SAE_ID"
        )
    release, _, sae_id = text.partition("/")
    if not release or not sae_id:
        raise ModelError(
            f"{text} is neither an SAE folder nor RELEASE/SAE_ID (e.g. gemma-scope-2b-pt-res-canonical/"
            "layer_20/width_16k/canonical)"
        )
    return SaeSource(name=text, release=release, sae_id=sae_id)


_BUILD_WORDS = (
    ("pass --sae-path", "name the SAE by its folder"),
    ("check the network and --sae-release / --sae-id", "check the network and the SAE's name"),
    ("check --sae-release and --sae-id", "check the SAE's name (RELEASE/SAE_ID)"),
    ("check --sae-id", "check the SAE's name (RELEASE/SAE_ID)"),
)
"""load_sae's errors in `vista build`'s options, and the same advice for `vista match`, which takes names."""


def _in_match_words(error: ModelError) -> ModelError:
    """A load error, its advice worded for `vista match`."""
    text = str(error)
    for build_words, match_words in _BUILD_WORDS:
        text = text.replace(build_words, match_words)
    return ModelError(text)


def check_same_input(a: SaeSource, b: SaeSource) -> None:
    """ModelError when the configs say the two SAEs read activations of different widths (no weight is read)."""
    try:
        shape_a, shape_b = read_sae_shape(**a.kwargs()), read_sae_shape(**b.kwargs())
    except ModelError as error:
        raise _in_match_words(error) from None
    if shape_a is None or shape_b is None or shape_a.d_in is None or shape_b.d_in is None:
        return  # the loaded weights are checked instead
    refuse_different_inputs(a.name, shape_a.d_in, b.name, shape_b.d_in)


def refuse_different_inputs(a: str, d_a: int, b: str, d_b: int) -> None:
    """The one line for two SAEs that cannot be compared: their directions live in different spaces."""
    if d_a != d_b:
        raise ModelError(
            f"SAE A ({a}) reads {d_a}-wide activations and SAE B ({b}) {d_b}-wide: their directions cannot be "
            "compared; match two SAEs of one model and hook"
        )


def load_directions(source: SaeSource, device: str = "cpu") -> Directions:
    """Load one SAE (sae-lens) and keep its decoder rows and encoder columns as float32 tensors on `device`."""
    try:
        sae = load_sae(**source.kwargs(), device=device)
    except ModelError as error:
        raise _in_match_words(error) from None
    decoder = sae.W_dec.detach().float()
    encoder = sae.W_enc.detach().float().T
    if decoder.shape != encoder.shape:
        raise ModelError(
            f"SAE {source.name} writes {decoder.shape[1]}-wide outputs but reads {encoder.shape[1]}-wide inputs "
            "(a transcoder?): vista match compares SAEs whose decoder writes what the encoder reads"
        )
    metadata = getattr(sae.cfg, "metadata", None)
    hook = getattr(metadata, "hook_name", None) or getattr(sae.cfg, "hook_name", None) or ""
    model = getattr(metadata, "model_name", None) or getattr(sae.cfg, "model_name", None) or ""
    ref = SaeRef(sae=source.name, d_in=int(decoder.shape[1]), d_sae=int(decoder.shape[0]), hook=hook, model=model)
    return Directions(ref=ref, decoder=decoder, encoder=encoder.contiguous())
