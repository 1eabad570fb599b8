"""How scene mode builds a scene (one frozen dataclass, like Framing and Lighting): where new plates go,
what happens to the real plates of a photo, harmonisation, hard negatives and degradations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .composite import Harmonise
from .degrade import Degrade
from .presets import resolve_preset
from .scene_prior import MAX_PLATES, ScenePrior

REAL_PLATES = ("replace", "erase")


@dataclass(frozen=True)
class Scene:
    """Scene-mode settings. With photos (`scenes=` or the shipped frames) every annotated real plate
    is either replaced by a stream plate warped over it ("replace") or erased, new plates then going
    where the prior puts them ("erase"); no real plate is ever left unlabelled."""

    prior: ScenePrior | str | Path | None = None  # where new plates go and how large; None: the shipped prior
    real_plates: str = "replace"
    extra_plates: tuple[int, int] = (0, 0)  # photos, "replace": plates pasted besides the replaced ones
    #   (none by default: extras placed by the prior often float off the cars; detection screens read lower with them)
    cover: float = 0.0  # photos, "replace": a replacing plate covers its real plate's box grown by this share
    #   of the box height on every side (the plate drawn, and labelled, is that grown box)
    box_margin: float | tuple[float, float] = 0.15  # each plate's box label grown by this share of its height
    #   per side, or (left/right, top/bottom) shares of its height (clipped to the image; corners and character
    #   boxes stay exact): annotators leave a margin round a plate, and a detector trained on exact boxes predicts
    #   boxes smaller than theirs (detection, Xeon 2026-12-06: `replace` 0.433 at 0.15, 0.413 at 0.25, 0.423 at
    #   (0.3, 0.1), against 0.374 at 0; `default` 0.358 against 0.278); 0 keeps every box the plate's exact extent
    aspect_match: float | None = None  # photos, "replace": a plate with no annotated region is drawn from
    #   regions weighted by how well their aspect fits its box (log-aspect spread; None: by weight alone)
    zoom: tuple[float, float] = (1.0, 1.0)  # photos: scale over fitting the scene (a crop cutting no plate);
    #   none by default: zooming a photo no larger than the scene (the 640-px Open Images photos) upsamples it, softer
    min_plate_px: float = 14.0  # narrowest new plate, scene pixels
    harmonise: Harmonise | dict | None = Harmonise()  # local light, colour, focus; soft edges
    p_tilt: float = 0.0  # photos, "replace": share of replacing plates turned in a box narrower than their aspect
    #   (by up to the angle at which they fit it undistorted, at most 30 degrees) instead of squeezed to fill it, the
    #   real plate erased under them: real plates in handheld photos are often turned in their boxes (screened at
    #   0.5 and 1.0 on the detection benchmark: level)
    p_recolour: float = 0.0  # share of plates redrawn in two random colours (their layout kept): plates of
    #                          grounds no region has (yellow, orange, black) for a detector to learn by shape
    p_negative: float = 0.0  # share of scenes with hard negatives (signs, banners: text that is not a plate);
    #                          none by default: detectors trained on the scenes alone read more real plates
    #                          without them (whole run 2026-12-06: `replace` 0.374 vs 0.344 at 0.4, `default` 0.278
    #                          vs 0.269); mixed into real photos 0.4 read more (0.515 / 0.474 vs 0.500 / 0.451)
    negatives: tuple[int, int] = (1, 2)  # how many in such a scene
    p_patch: float = 0.0  # share of scenes with 1-2 decoys: plate-sized pieces of the scene itself pasted
    #                       elsewhere exactly as a plate is (warp, harmonisation, edge), unlabelled
    degrade: Degrade | dict | None = Degrade()  # low light, blur, noise, JPEG on the whole scene
    as_taken: bool | None = None  # photos only: True, no whole-scene augmentation (the stream's `augment`) or
    #   `degrade`: the photo keeps its own view, light, focus, noise and compression and its plates take them by
    #   `harmonise`; False, augmented and degraded like procedural and folder backgrounds (which always are);
    #   None (default): the user's photos (scenes=) taken as they are, the shipped frames (96 frames of one dashcam set)
    #   augmented but not degraded. Detection, Xeon 2026-12-07, 1,000 steps: `replace` on the user's photos 0.555 /
    #   0.556 on two pools as taken (and unzoomed), 0.494 / 0.519 augmented, degraded and zoomed, 0.550 / 0.519
    #   with only the augmentation kept; `default` (the shipped frames) 0.411 / 0.419 as taken, 0.443 / 0.445 with
    #   the augmentation kept

    def __post_init__(self):
        if isinstance(self.prior, (str, Path)):
            object.__setattr__(self, "prior", ScenePrior.load(self.prior))
        if self.prior is not None and not isinstance(self.prior, ScenePrior):
            raise TypeError(f"Scene.prior must be a ScenePrior, a path to its .toml or None, got {self.prior!r}")
        for name, cls in (("harmonise", Harmonise), ("degrade", Degrade)):
            v = getattr(self, name)
            if isinstance(v, dict):
                object.__setattr__(self, name, cls(**{k: tuple(x) if isinstance(x, list) else x
                                                      for k, x in v.items()}))
            elif v is not None and not isinstance(v, cls):
                raise TypeError(f"Scene.{name} must be a plateaug.{cls.__name__}, a dict of its fields or None, "
                                f"got {v!r}")
        if self.as_taken is not None and not isinstance(self.as_taken, bool):  # (0 and 1 are not flags here)
            raise TypeError(f"Scene.as_taken must be True, False or None, got {self.as_taken!r}")
        if self.real_plates not in REAL_PLATES:
            raise ValueError(f"Scene.real_plates must be one of {REAL_PLATES}, got {self.real_plates!r}")
        for name, top in (("extra_plates", MAX_PLATES), ("negatives", MAX_PLATES)):
            lo, hi = getattr(self, name)
            if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi <= top):
                raise ValueError(f"Scene.{name} must be (low, high) ints with 0 <= low <= high <= {top}, "
                                 f"got {getattr(self, name)}")
        if not 1.0 <= self.zoom[0] <= self.zoom[1] <= 4.0:
            raise ValueError(f"Scene.zoom must be (low, high) with 1 <= low <= high <= 4, got {self.zoom}")
        if not 4.0 <= self.min_plate_px <= 256.0:
            raise ValueError(f"Scene.min_plate_px must be in [4, 256], got {self.min_plate_px}")
        if not 0.0 <= self.cover <= 0.5:  # below 0 a rim of the real plate would show outside its label
            raise ValueError(f"Scene.cover must be in [0, 0.5] (share of the box height), got {self.cover}")
        if isinstance(self.box_margin, list):  # from JSON or TOML
            object.__setattr__(self, "box_margin", tuple(self.box_margin))
        margins = self.box_margin if isinstance(self.box_margin, tuple) else (self.box_margin,)
        if len(margins) not in (1, 2) or not all(isinstance(m, (int, float)) and 0.0 <= m <= 0.5 for m in margins):
            raise ValueError("Scene.box_margin must be a share of the box height in [0, 0.5], or a (left/right, "
                             f"top/bottom) pair of them, got {self.box_margin}")
        if self.aspect_match is not None and not 0.05 <= self.aspect_match <= 4.0:
            raise ValueError(f"Scene.aspect_match must be None or in [0.05, 4], got {self.aspect_match}")
        for name in ("p_tilt", "p_recolour", "p_negative", "p_patch"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Scene.{name} must be in [0, 1], got {getattr(self, name)}")

    def photo_look(self, shipped: bool) -> tuple[bool, bool]:
        """(augment, degrade): whether a photo scene gets the stream's whole-scene augmentation and `degrade`
        (Scene.as_taken); `shipped`: the photos are the shipped frames, not the user's scenes=."""
        augment = self.as_taken is False or (self.as_taken is None and shipped)
        return augment, self.as_taken is False and self.degrade is not None


SCENES: dict[str, Scene] = {
    "default": Scene(),
    "plain": Scene(harmonise=None, p_negative=0.0, degrade=None),  # composition only (ablations)
}


def resolve_scene(scene: str | Scene | dict | None) -> Scene:
    """A preset name ("default", "plain"), a Scene, a dict of Scene fields, or None (= "default")."""
    return resolve_preset(scene, Scene, SCENES, "scene") or SCENES["default"]
