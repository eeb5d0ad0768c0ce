"""Images a vision-language benchmark feeds the model: files a user names, or one synthetic test image.

Images are decoded once, before the timed repetitions (file reading and decoding are not the
model's cost); each backend then times its own preprocessing of the decoded pixels. The test
image is noise from a fixed seed, so every run without ``--image`` sees the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmbench.errors import BackendUnavailableError, InvalidOptionError

TEST_IMAGE_SIZE = 224
"""Side of the synthetic test image, in pixels (CLIP's and SigLIP's input size; processors resize)."""


def import_pillow() -> Any:
    """``PIL.Image``, or a one-line error that says how to install Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise BackendUnavailableError(
            "Pillow is not installed (images need it)", "install it with: pip install pillow"
        ) from None
    return Image


def load_images(paths: Sequence[str | Path]) -> list[Any]:
    """Each file decoded as an RGB ``PIL.Image``; a missing or unreadable file is a one-line error."""
    image_module = import_pillow()
    images = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InvalidOptionError(f"image {path} does not exist", "pass --image with the path of a PNG or JPEG file")
        try:
            with image_module.open(path) as opened:
                images.append(opened.convert("RGB"))
        except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
            raise InvalidOptionError(
                f"could not read image {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                "pass a PNG, JPEG or another format Pillow reads",
            ) from None
    return images


def synthetic_image(size: int = TEST_IMAGE_SIZE, seed: int = 0) -> Any:
    """A ``size`` x ``size`` RGB noise image from ``seed``: the same pixels on every machine."""
    import numpy as np

    image_module = import_pillow()
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return image_module.fromarray(pixels)  # an (H, W, 3) uint8 array is RGB


def describe(images: Sequence[str | Path]) -> list[str]:
    """How a run records its images: the paths given, or the synthetic image's recipe."""
    if images:
        return [str(Path(name)) for name in images]
    return [f"synthetic {TEST_IMAGE_SIZE}x{TEST_IMAGE_SIZE} noise, seed 0"]
