"""The workflows every install starts with: ComfyUI's own default txt2img graph, and the
same graph starting from an input image (img2img)."""

from __future__ import annotations

import copy
from typing import Any

NAME = "Default txt2img (built-in)"
DESCRIPTION = (
    "ComfyUI's default text-to-image graph: checkpoint → prompts → empty latent → "
    "KSampler → VAE decode → save. Pick a checkpoint your server has."
)
# Seed -1 = a new random seed for every generation unless the user fixes one.
DEFAULTS: dict[str, Any] = {"seed": -1}

_WORKFLOW: dict[str, Any] = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
        "_meta": {"title": "KSampler"},
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        "_meta": {"title": "Load Checkpoint"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
        "_meta": {"title": "Empty Latent Image"},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {
            "text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle",
            "clip": ["4", 1],
        },
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    },
    "7": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "text, watermark", "clip": ["4", 1]},
        "_meta": {"title": "CLIP Text Encode (Negative)"},
    },
    "8": {
        "class_type": "VAEDecode",
        "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
        "_meta": {"title": "VAE Decode"},
    },
    "9": {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "SpoonFeeder", "images": ["8", 0]},
        "_meta": {"title": "Save Image"},
    },
}


def workflow() -> dict[str, Any]:
    return copy.deepcopy(_WORKFLOW)


IMG2IMG_NAME = "Default img2img (built-in)"
IMG2IMG_DESCRIPTION = (
    "The txt2img graph starting from an input image: load image → VAE encode → KSampler "
    "(denoise 0.6: how far to move away from the image) → VAE decode → save."
)
IMG2IMG_DEFAULTS: dict[str, Any] = {"seed": -1}


def img2img_workflow() -> dict[str, Any]:
    graph = workflow()
    del graph["5"]  # no empty latent: the latent comes from the image
    graph["10"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "example.png"},
        "_meta": {"title": "Load Image"},
    }
    graph["11"] = {
        "class_type": "VAEEncode",
        "inputs": {"pixels": ["10", 0], "vae": ["4", 2]},
        "_meta": {"title": "VAE Encode"},
    }
    graph["3"]["inputs"].update(denoise=0.6, latent_image=["11", 0])
    return graph
