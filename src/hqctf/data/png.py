"""`PngSliceSource`: 2D slices as 8-bit PNG images with RGB colour-coded masks (``images/*.png`` + ``masks/*.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .case import Case
from .errors import DataError
from .source import Source

#: KiTS19 PNG mask colours, in label-value order (kidney 1, tumor 2).
KITS19_COLOURS: dict[str, tuple[int, int, int]] = {"kidney": (0, 0, 255), "tumor": (255, 0, 0)}
_BACKGROUND = (0, 0, 0)


def _read_rgb(path: Path) -> np.ndarray:
    """An 8-bit PNG as an (H, W, 3) uint8 array (grey, palette and alpha images converted)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow raises these for damaged files
        raise DataError(f"{path}: cannot read PNG, file truncated or corrupt ({type(exc).__name__}: {exc})") from None
    with img:
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise DataError(f"{path}: {img.mode} PNG not supported; expected an 8-bit grey or RGB image")
        return np.asarray(img.convert("RGB"))


def _code(rgb: np.ndarray) -> np.ndarray:
    """One integer per pixel (or colour tuple): 0xRRGGBB."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class PngSliceSource(Source):
    """Axial slices as PNG: ``root/images/<name>.png`` (windowed grey) with ``root/masks/<name>.png`` (RGB colours).

    Each PNG is one `Case` of shape (W, H, 1): X runs along image columns, Y along image rows
    (``image = png.T[..., None]``), intensity ``"windowed"`` (0..255 as float32). PNG has no spacing, so the affine
    is the identity (1 mm voxels, orientation unknown): volumes in cc and mm distances are in pixel units.
    ``patient_id`` is the name before its last ``_`` (``10036_103`` -> ``10036``), so splits keep a patient's
    slices together. Without a ``masks/`` folder the cases have no label (images to predict).

    Args:
        root: folder holding ``images/`` and ``masks/``.
        colours: structure name -> mask RGB colour, label values 1, 2, ... in this order; black is background.
            Default `KITS19_COLOURS`.
    """

    format = "png"

    def __init__(self, root: str | Path, colours: dict[str, tuple[int, int, int]] | None = None) -> None:
        colours = dict(KITS19_COLOURS if colours is None else colours)
        rgbs = [tuple(int(c) for c in rgb) for rgb in colours.values()]
        if any(len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb) for rgb in rgbs) or len(set(rgbs)) != len(rgbs) or _BACKGROUND in rgbs:
            raise ValueError(f"colours must be distinct RGB triples in 0..255 other than black, got {colours}")
        super().__init__(root, {value: name for value, name in enumerate(colours, start=1)})
        self.colours = dict(zip(colours, rgbs))
        self._lut = {int(_code(rgb)): value for value, rgb in enumerate(rgbs, start=1)} | {0: 0}
        self.images_dir, self.masks_dir = self.root / "images", self.root / "masks"

    def case_ids(self) -> list[str]:
        if not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: images folder not found")
        return sorted(p.stem for p in self.images_dir.glob("*.png"))

    def files(self, case_id: str) -> list[Path]:
        image = self.images_dir / f"{case_id}.png"
        return [image, self.masks_dir / f"{case_id}.png"] if self.masks_dir.is_dir() else [image]

    def _decode(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """Mask colours -> label values; raises naming the colours that are not in the map."""
        codes = _code(mask)
        found = np.unique(codes)
        stray = [int(c) for c in found if int(c) not in self._lut]
        if stray:
            shown = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in stray[:8]]
            more = f" and {len(stray) - 8} more" if len(stray) > 8 else ""
            raise DataError(f"{path}: unexpected mask colours {shown}{more}; expected black or {self.colours}")
        label = np.zeros(codes.shape, dtype=np.uint8 if len(self._lut) <= 256 else np.uint16)
        for code in found:
            label[codes == code] = self._lut[int(code)]
        return label

    def read(self, case_id: str) -> Case:
        image_path, *masks = self.files(case_id)
        rgb = _read_rgb(image_path)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            raise DataError(f"{image_path}: colour image; expected grey (equal R, G and B)")
        label = None
        for mask_path in masks:
            if not mask_path.is_file():
                raise DataError(f"{mask_path}: mask file not found for image {image_path.name}")
            label = np.ascontiguousarray(self._decode(_read_rgb(mask_path), mask_path).T[..., None])
        return Case(
            case_id,
            np.ascontiguousarray(rgb[..., 0].T[..., None], dtype=np.float32),
            np.eye(4),
            label,
            structures=dict(self.labels),
            patient_id=case_id.rsplit("_", 1)[0],
            intensity="windowed",
            sources=(image_path, *masks),
        ).validate()
