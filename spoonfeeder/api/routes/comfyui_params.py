"""Generation parameters as REST bodies: what a generate request sets, and a workflow's
defaults. Values are only typed here; ranges, multiples of 8 and names the server
offers are checked by the service, which names the field it refuses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LoraBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a LoRA file the server lists (GET /comfyui/options)")
    strength_model: float = Field(1.0, description="strength on the model")
    strength_clip: float | None = Field(None, description="strength on CLIP; default: the model's")


class GenerationParameters(BaseModel):
    """The workflow parameters a request may set; any left out come from the workflow's
    defaults, then the session's last values for that workflow."""

    model_config = ConfigDict(extra="forbid")

    width: int | None = Field(None, description="pixels, a multiple of 8", examples=[1024])
    height: int | None = Field(None, description="pixels, a multiple of 8", examples=[1024])
    steps: int | None = Field(None, description="sampler steps", examples=[20])
    cfg: float | None = Field(None, description="classifier-free guidance scale", examples=[7.0])
    seed: int | None = Field(
        None, description="-1 picks a random seed; a batch counts up from it", examples=[-1]
    )
    sampler_name: str | None = Field(None, description="e.g. euler (see /comfyui/options)")
    scheduler: str | None = Field(None, description="e.g. normal, karras")
    checkpoint: str | None = Field(None, description="a checkpoint file the server lists")
    batch_size: int | None = Field(None, description="images per generation")
    loras: list[LoraBody] | None = Field(None, description="LoRAs chained after the checkpoint")
    denoise: float | None = Field(None, description="0–1, for img2img workflows")
    image: str | None = Field(
        None,
        description="an input image already on the ComfyUI server, by name (e.g. one of an "
        "earlier generation's input_images); to send a new one use input_image",
    )

    def values(self) -> dict[str, Any]:
        """The parameters given, as the service takes them (explicit nulls kept)."""
        return self.model_dump(exclude_unset=True)


class DefaultParameters(GenerationParameters):
    """A workflow's default parameters; null puts one back to the workflow's own value."""

    prompt: str | None = Field(None, description="the default prompt")
    negative_prompt: str | None = Field(None, description="the default negative prompt")
