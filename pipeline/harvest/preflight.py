"""What a harvest checks before it loads anything: the corpus, the model's config.json, the SAE's config.

Loading a model and an SAE takes seconds to minutes (the imports, then the weights). A missing
corpus, a wrong --text-field, a layer the model does not have, a latent beyond the SAE or an
SAE trained on another hook must not wait for that. `check` reads only small files: the first
record of each corpus source, the model's config.json, and the SAE's cfg.json (for a hub SAE,
sae-lens's config of it, no weights). It raises the same one-line errors as the harvest does
after loading, and the harvest's own checks stay as the safety net.
"""

from __future__ import annotations

from pipeline.corpus import check_corpus
from pipeline.harvest.config import ChildrenConfig, HarvestConfig, HarvestError
from pipeline.models import (
    ModelShape,
    SAEShape,
    harvest_hook,
    hook_layer,
    hook_mismatch,
    is_transformer_lens_hook,
    read_model_shape,
    read_sae_shape,
    same_hook,
    spelled_layer,
)


def check(cfg: HarvestConfig, *, force_hook: bool = False) -> None:
    """Raise CorpusError / HarvestError for any input of `cfg` that is wrong, before a model or SAE loads.

    The cheapest checks come first: the corpus, then the model's config (its layers), then the
    SAE's config (its latents, width and hook). `force_hook` lets an SAE recorded on another hook
    through, as the harvest's own `force_hook` does.
    """
    check_corpus(cfg.corpus, cfg.text_field)
    model = read_model_shape(cfg.model)
    _check_hook(cfg.hook, model)
    sae = read_sae_shape(sae_release=cfg.sae_release, sae_id=cfg.sae_id, sae_path=cfg.sae_path)
    if cfg.children is not None:
        _check_children(cfg.children, cfg.hook, model, sae, force_hook)
    if sae is None:
        return  # sae-lens cannot tell without loading: the harvest checks after loading
    too_big = [latent for latent in cfg.latents if sae.d_sae is not None and latent >= sae.d_sae]
    if too_big:
        raise HarvestError(f"latent {too_big[0]} is out of range: the SAE has {sae.d_sae} latents (0..{sae.d_sae - 1})")
    if not force_hook:
        refusal = hook_mismatch(cfg.hook, sae.hook, model.n_layers, sae.source)
        if refusal is not None:
            raise HarvestError(refusal)
    _check_width(cfg.hook, model, sae)


def _check_children(
    children: ChildrenConfig, hook: str, model: ModelShape, sae: SAEShape | None, force_hook: bool
) -> None:
    """HarvestError when SAE B (`--also-sae`) reads another width than the map's SAE (or, when that one cannot
    tell, the hook's block), or was trained on another hook; the harvest checks again after loading."""
    other = read_sae_shape(sae_release=children.sae_release, sae_id=children.sae_id, sae_path=children.sae_path)
    if other is None:
        return
    width, whose = (sae.d_in, "the map's SAE") if sae is not None and sae.d_in is not None else (None, "")
    if width is None and spelled_layer(hook) is not None and model.width is not None:
        width, whose = model.width, f"hook {hook} (config.json)"
    if other.d_in is not None and width is not None and other.d_in != width:
        raise HarvestError(also_sae_width_message(children.sae_description, other.d_in, width, whose))
    if not force_hook and other.hook is not None and not same_hook(hook, other.hook, model.n_layers):
        raise HarvestError(
            f"--also-sae {children.sae_description} was trained on hook {other.hook} ({other.source}), not {hook}:"
            " pick an SAE B of the map's hook, or pass --force-hook to compare them anyway"
        )


def also_sae_width_message(name: str, d_in: int, width: int, whose: str) -> str:
    """The one line for an `--also-sae` SAE whose input width is not the map's (preflight and harvest alike)."""
    return (
        f"--also-sae {name} reads d_in {d_in}, but {whose} reads {width}: pick an SAE B of the same model and hook"
        " (same d_in)"
    )


def default_hook(*, sae_release: str | None = None, sae_id: str | None = None, sae_path: str | None = None) -> str:
    """The hook to harvest when none is asked for: the one the SAE was trained on, spelled as --hook takes it.

    HarvestError when the SAE's config records none, or one the harvest cannot read.
    """
    sae = read_sae_shape(sae_release=sae_release, sae_id=sae_id, sae_path=sae_path)
    if sae is None:
        raise HarvestError(
            "no --hook given, and sae-lens cannot tell the SAE's hook without loading it; pass --hook: a layer"
            " number or a module path"
        )
    if sae.hook is None:
        raise HarvestError(
            f"no --hook given, and the SAE records no hook in its {sae.source} (metadata.hook_name); pass --hook:"
            " a layer number or a module path"
        )
    hook = harvest_hook(sae.hook)
    if hook is None:
        raise HarvestError(
            f"no --hook given, and the SAE was trained on hook {sae.hook} ({sae.source}), which the harvest cannot"
            " read (it reads block outputs and modules); pass --hook: a layer number or a module path"
        )
    return hook


def _check_hook(hook: str, model: ModelShape) -> None:
    """HarvestError for a layer the model's config says it does not have, or a TransformerLens name the harvest
    does not read ("blocks.4.hook_resid_pre"; a module path is checked once the model is loaded)."""
    layer = spelled_layer(hook)
    n = model.n_layers
    if layer is not None and n is not None and not -n <= layer < n:
        raise HarvestError(
            f"layer {layer} is out of range: the model has blocks 0..{n - 1} (config.json: {n} layers); pass a layer"
            f" 0..{n - 1} or a module path"
        )
    if layer is None and is_transformer_lens_hook(hook):
        same = harvest_hook(hook, n)
        instead = f"--hook {same} (the same residual stream)" if same is not None else "a layer number or a module path"
        raise HarvestError(
            f"hook {hook} is a TransformerLens hook point the harvest does not read (it reads block outputs and"
            f" modules); pass {instead}"
        )


def _check_width(hook: str, model: ModelShape, sae: SAEShape) -> None:
    """HarvestError when a block's output (the config's width) is not the SAE's input; module paths are measured
    after loading, since their width may be anything."""
    if spelled_layer(hook) is None or model.width is None or sae.d_in is None or sae.d_in == model.width:
        return
    layer = hook_layer(hook, model.n_layers)
    trained_on = f" (the SAE was trained on {sae.hook})" if sae.hook else ""
    raise HarvestError(
        f"SAE d_in {sae.d_in} does not match hook {hook} width {model.width} (block {layer}'s output, config.json);"
        f" pick the hook the SAE was trained on{trained_on} or an SAE for this layer"
    )
