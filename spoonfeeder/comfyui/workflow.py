"""ComfyUI workflows as data: find where each parameter lives, and set it. No I/O.

An API-format workflow is ``{node_id: {"class_type": str, "inputs": {...}}}``; an input
that is ``[other_node_id, output_index]`` is a link. `extract_params` follows links from
the main sampler to find the nodes that carry each parameter; `apply_params` returns a
new workflow with values written into those nodes (adding or removing LoRA loaders
when asked for more or fewer LoRAs than the workflow has).
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import Any

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown

Workflow = dict[str, dict[str, Any]]
Target = tuple[str, str]  # (node_id, input_name)

SAMPLERS = {"KSampler", "KSamplerAdvanced"}
# parameter -> input name on a sampler node (KSamplerAdvanced calls the seed noise_seed)
SAMPLER_INPUTS = {
    "seed": ("seed", "noise_seed"),
    "steps": ("steps",),
    "cfg": ("cfg",),
    "sampler_name": ("sampler_name",),
    "scheduler": ("scheduler",),
    "denoise": ("denoise",),
}
LATENT_INPUTS = ("width", "height", "batch_size")
LORA_LOADERS = {"LoraLoader", "LoraLoaderModelOnly"}
IMAGE_LOADERS = {"LoadImage"}
MAX_SEED = 2**53 - 1  # exact in JSON numbers, browsers and BIGINT alike
UI_FORMAT_HELP = (
    "This is a UI-format workflow (the graph the ComfyUI editor saves, with 'nodes' and "
    "'links'). Spoon Feeder needs the API format: in ComfyUI use Workflow → Export (API) "
    "(older versions: enable 'Dev mode' in the settings, then 'Save (API Format)')."
)


@dataclass(frozen=True)
class LoraSlot:
    node_id: str
    name: str
    strength_model: float
    strength_clip: float | None  # None for LoraLoaderModelOnly


@dataclass(frozen=True)
class ParamMap:
    """Where each parameter lives; `loras` in chain order, checkpoint first."""

    targets: dict[str, Target] = field(default_factory=dict)
    loras: tuple[LoraSlot, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": {k: list(v) for k, v in self.targets.items()},
            "loras": [slot.__dict__ for slot in self.loras],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParamMap:
        return cls(
            {k: (v[0], v[1]) for k, v in (data.get("targets") or {}).items()},
            tuple(LoraSlot(**slot) for slot in data.get("loras") or []),
        )


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def validate_workflow(data: Any) -> Workflow:
    """The workflow if it is API format; a ValidationError saying what is wrong otherwise."""
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        raise ValidationError(UI_FORMAT_HELP, field="workflow")
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved /prompt request body
    if not isinstance(data, dict) or not data:
        raise ValidationError(
            "A ComfyUI API-format workflow is a JSON object of nodes, "
            '{"3": {"class_type": "KSampler", "inputs": {...}}, ...}',
            field="workflow",
        )
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ValidationError(
                f"Node {shown(node_id)} has no class_type: this is not an API-format workflow",
                field="workflow",
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise ValidationError(f"Node {shown(node_id)} has no inputs object", field="workflow")
        for name, value in node.get("inputs", {}).items():
            if is_link(value) and value[0] not in data:
                raise ValidationError(
                    f"Node {shown(node_id)} input {shown(name)} links to node {shown(value[0])}, "
                    "which is not in the workflow",
                    field="workflow",
                )
    if not any(node["class_type"] in SAMPLERS for node in data.values()):
        raise ValidationError(
            "The workflow has no KSampler or KSamplerAdvanced node to set parameters on",
            field="workflow",
        )
    return data


def _node_sort_key(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def _inputs(workflow: Workflow, node_id: str) -> dict[str, Any]:
    return workflow[node_id].get("inputs", {})


def _upstream(workflow: Workflow, start: Any, accept: set[str] | None = None) -> str | None:
    """Follow a link (and the first linked input of each node after it) until a node whose
    class_type is in `accept`, or, with `accept` None, a node that is not a pass-through."""
    seen: set[str] = set()
    link = start
    while is_link(link) and link[0] in workflow and link[0] not in seen:
        node_id = link[0]
        seen.add(node_id)
        if accept is None or workflow[node_id]["class_type"] in accept:
            return node_id
        link = next((v for v in _inputs(workflow, node_id).values() if is_link(v)), None)
    return None


def _text_encoder(workflow: Workflow, start: Any) -> str | None:
    """The prompt node behind a conditioning link: a node with a plain-string `text`."""
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        link = frontier.pop(0)
        if not is_link(link) or link[0] in seen or link[0] not in workflow:
            continue
        seen.add(link[0])
        inputs = _inputs(workflow, link[0])
        if isinstance(inputs.get("text"), str):
            return link[0]
        frontier += [v for v in inputs.values() if is_link(v)]
    return None


def main_sampler(workflow: Workflow) -> str:
    """The sampler that starts from an empty latent; else the first sampler by node id."""
    samplers = sorted(
        (nid for nid, n in workflow.items() if n["class_type"] in SAMPLERS), key=_node_sort_key
    )
    for node_id in samplers:
        latent = _upstream(workflow, _inputs(workflow, node_id).get("latent_image"), accept=None)
        if latent is not None and _is_empty_latent(workflow, latent):
            return node_id
    return samplers[0]


def _is_empty_latent(workflow: Workflow, node_id: str) -> bool:
    node = workflow[node_id]
    inputs = node.get("inputs", {})
    return "Latent" in node["class_type"] and "width" in inputs and "height" in inputs


def _input_image(workflow: Workflow, latent: Any) -> str | None:
    """The LoadImage node the main sampler starts from (LoadImage → VAEEncode → latent),
    else the first LoadImage of the workflow (an image used another way, e.g. ControlNet)."""
    feeding = _upstream(workflow, latent, accept=IMAGE_LOADERS)
    if feeding is not None:
        return feeding
    loaders = sorted(
        (nid for nid, n in workflow.items() if n["class_type"] in IMAGE_LOADERS),
        key=_node_sort_key,
    )
    return loaders[0] if loaders else None


def _lora_chain(workflow: Workflow, sampler_id: str) -> tuple[list[str], str | None]:
    """LoRA loader ids from the checkpoint towards the sampler, and the checkpoint node."""
    chain: list[str] = []
    link = _inputs(workflow, sampler_id).get("model")
    seen: set[str] = set()
    while is_link(link) and link[0] in workflow and link[0] not in seen:
        node_id = link[0]
        seen.add(node_id)
        inputs = _inputs(workflow, node_id)
        if "ckpt_name" in inputs:
            return list(reversed(chain)), node_id
        if workflow[node_id]["class_type"] in LORA_LOADERS:
            chain.append(node_id)
        link = inputs.get("model")
    return list(reversed(chain)), None


def extract_params(workflow: Workflow) -> ParamMap:
    """Find the node and input that carry each parameter, starting from the main sampler."""
    workflow = validate_workflow(workflow)
    sampler = main_sampler(workflow)
    inputs = _inputs(workflow, sampler)
    targets: dict[str, Target] = {}
    for param, names in SAMPLER_INPUTS.items():
        for name in names:
            if name in inputs and not is_link(inputs[name]):
                targets[param] = (sampler, name)
                break
    latent = _upstream(workflow, inputs.get("latent_image"), accept=None)
    if latent is not None and _is_empty_latent(workflow, latent):
        for name in LATENT_INPUTS:
            if name in _inputs(workflow, latent):
                targets[name] = (latent, name)
    for param, link_name in (("prompt", "positive"), ("negative_prompt", "negative")):
        encoder = _text_encoder(workflow, inputs.get(link_name))
        if encoder is not None:
            targets[param] = (encoder, "text")
    chain, checkpoint = _lora_chain(workflow, sampler)
    if checkpoint is not None:
        targets["checkpoint"] = (checkpoint, "ckpt_name")
    image = _input_image(workflow, inputs.get("latent_image"))
    if image is not None:
        targets["image"] = (image, "image")
    loras = tuple(
        LoraSlot(
            node_id,
            str(_inputs(workflow, node_id).get("lora_name", "")),
            float(_inputs(workflow, node_id).get("strength_model", 1.0)),
            (
                float(_inputs(workflow, node_id).get("strength_clip", 1.0))
                if workflow[node_id]["class_type"] == "LoraLoader"
                else None
            ),
        )
        for node_id in chain
    )
    return ParamMap(targets, loras)


def read_params(workflow: Workflow, mapping: ParamMap) -> dict[str, Any]:
    """The current value of every mapped parameter (the workflow's defaults)."""
    values: dict[str, Any] = {
        param: workflow[node_id]["inputs"].get(name)
        for param, (node_id, name) in mapping.targets.items()
    }
    values["loras"] = [
        {"name": s.name, "strength_model": s.strength_model, "strength_clip": s.strength_clip}
        for s in mapping.loras
    ]
    return values


def apply_params(workflow: Workflow, mapping: ParamMap, values: dict[str, Any]) -> Workflow:
    """A new workflow with `values` written in; parameters without a node are ignored.

    `values["loras"]` (a list of {name, strength_model, strength_clip}) replaces the LoRA
    chain: loaders are reused in order, added after the last one, or removed.
    """
    result = copy.deepcopy(workflow)
    for param, value in values.items():
        if param == "loras" or value is None or param not in mapping.targets:
            continue
        node_id, name = mapping.targets[param]
        result[node_id]["inputs"][name] = value
    if values.get("loras") is not None:
        _apply_loras(result, mapping, list(values["loras"]))
    return result


def _apply_loras(workflow: Workflow, mapping: ParamMap, loras: list[dict[str, Any]]) -> None:
    slots = list(mapping.loras)
    for slot, lora in zip(slots, loras, strict=False):
        inputs = workflow[slot.node_id]["inputs"]
        inputs["lora_name"] = lora["name"]
        inputs["strength_model"] = float(lora.get("strength_model", 1.0))
        if "strength_clip" in inputs:
            inputs["strength_clip"] = float(
                lora.get("strength_clip", lora.get("strength_model", 1.0))
            )
    for slot in slots[len(loras) :]:
        _remove_loader(workflow, slot.node_id)
    extra = loras[len(slots) :]
    if extra:
        tail = slots[-1].node_id if slots else mapping.targets.get("checkpoint", (None, ""))[0]
        if tail is None:
            raise ValidationError("This workflow has no checkpoint loader to chain LoRAs after")
        checkpoint = mapping.targets.get("checkpoint", (tail, ""))[0]
        for lora in extra:
            tail = _insert_loader_after(workflow, tail, lora, checkpoint)


def _rewire(workflow: Workflow, old: list[Any], new: list[Any], skip: str | None = None) -> None:
    for node_id, node in workflow.items():
        if node_id == skip:
            continue
        for name, value in node.get("inputs", {}).items():
            if value == old:
                node["inputs"][name] = list(new)


def _remove_loader(workflow: Workflow, node_id: str) -> None:
    inputs = workflow[node_id]["inputs"]
    _rewire(workflow, [node_id, 0], inputs["model"])
    if "clip" in inputs:
        _rewire(workflow, [node_id, 1], inputs["clip"])
    del workflow[node_id]


def _insert_loader_after(
    workflow: Workflow, tail: str, lora: dict[str, Any], checkpoint: str
) -> str:
    """A LoraLoader fed by `tail`'s MODEL (output 0) and CLIP (output 1), taking its place.

    A model-only loader has no CLIP output: the CLIP then comes from the checkpoint.
    """
    clip_source = checkpoint if workflow[tail]["class_type"] == "LoraLoaderModelOnly" else tail
    new_id = str(max((int(n) for n in workflow if n.isdigit()), default=0) + 1)
    strength = float(lora.get("strength_model", 1.0))
    workflow[new_id] = {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": lora["name"],
            "strength_model": strength,
            "strength_clip": float(lora.get("strength_clip", strength)),
            "model": [tail, 0],
            "clip": [clip_source, 1],
        },
        "_meta": {"title": "Load LoRA"},
    }
    _rewire(workflow, [tail, 0], [new_id, 0], skip=new_id)
    _rewire(workflow, [clip_source, 1], [new_id, 1], skip=new_id)
    return new_id


def resolve_seed(seed: int | None) -> int:
    """-1 (or None) draws a random seed; any other value must be a valid seed."""
    if seed is None or int(seed) == -1:
        return secrets.randbelow(MAX_SEED + 1)
    value = int(seed)
    if not 0 <= value <= MAX_SEED:
        raise ValidationError(f"Seed must be -1 (random) or between 0 and {MAX_SEED}", "seed")
    return value
