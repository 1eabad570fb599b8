"""Where plates sit in photos, and how large: a prior measured from box annotations.

A plate is described by four numbers: log of its width as a share of the image width, its centre
(x, y) as shares of the image size, and log of its box aspect (width / height). The prior holds a
small Gaussian mixture over them (fitted by EM) and the distribution of plates per image. A mixture
keeps what matters for detection realism (most plates are 3-15 % of the width, low in the frame,
close-ups large and central) in a few dozen numbers, not the annotations themselves.

    prior = ScenePrior.from_coco("annotations.json")     # measure one
    prior.save("my_prior.toml"); ScenePrior.load("my_prior.toml")
    PlateGANStream(mode="scene", scene=Scene(prior=prior))
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DIMS = ("log_width", "x", "y", "log_aspect")
MAX_COMPONENTS = 16
MAX_PLATES = 8  # plates per image the prior may ask for
MAX_PRIOR_BYTES = 64 * 1024
WIDTH_RANGE = (0.008, 0.7)  # plate width share of the image width, after sampling
ASPECT_RANGE = (0.8, 6.0)  # box width / height, after sampling
DEFAULT_PRIOR = Path(__file__).parent / "scenes" / "prior.toml"


@dataclass(frozen=True)
class ScenePrior:
    """A Gaussian mixture over (log width share, x, y, log aspect) and the share of images with
    1..MAX_PLATES plates. `source` says what it was measured on."""

    weights: tuple[float, ...]  # (K,) component weights, sum 1
    means: tuple[tuple[float, ...], ...]  # (K, 4)
    covariances: tuple[tuple[tuple[float, ...], ...], ...]  # (K, 4, 4)
    plates_per_image: tuple[float, ...]  # (P,) share of images with 1, 2, ..., P plates
    source: str = ""
    _chol: np.ndarray = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        K = len(self.weights)
        if not 1 <= K <= MAX_COMPONENTS:
            raise ValueError(f"ScenePrior needs 1 to {MAX_COMPONENTS} components, got {K}")
        w = np.asarray(self.weights, dtype=np.float64)
        means = np.asarray(self.means, dtype=np.float64)
        cov = np.asarray(self.covariances, dtype=np.float64)
        if means.shape != (K, 4) or cov.shape != (K, 4, 4):
            raise ValueError(f"ScenePrior: means must be (K, 4) and covariances (K, 4, 4) for K={K} weights, got "
                             f"{means.shape} and {cov.shape}")
        if not (np.isfinite(w).all() and np.isfinite(means).all() and np.isfinite(cov).all()) or (w < 0).any() \
                or w.sum() <= 0:
            raise ValueError("ScenePrior: weights, means and covariances must be finite, weights >= 0 and not all 0")
        try:
            chol = np.linalg.cholesky(cov + 1e-9 * np.eye(4))
        except np.linalg.LinAlgError:
            raise ValueError("ScenePrior: every covariance must be symmetric positive definite") from None
        ppi = np.asarray(self.plates_per_image, dtype=np.float64)
        if not 1 <= len(ppi) <= MAX_PLATES or not np.isfinite(ppi).all() or (ppi < 0).any() or ppi.sum() <= 0:
            raise ValueError(f"ScenePrior.plates_per_image: shares of images with 1..P plates, 1 <= P <= {MAX_PLATES}, "
                             f"non-negative, not all 0; got {self.plates_per_image}")
        object.__setattr__(self, "_chol", chol)

    # -- sampling ---------------------------------------------------------------------------------
    def sample_counts(self, n: int, g: torch.Generator, lo: int = 1, hi: int = MAX_PLATES) -> torch.Tensor:
        """(n,) plates per image, drawn from plates_per_image restricted to [lo, hi]."""
        p = torch.tensor(self.plates_per_image, dtype=torch.float64)
        ks = torch.arange(1, len(p) + 1)
        p = torch.where((ks >= lo) & (ks <= hi), p, torch.zeros_like(p))
        if p.sum() <= 0:  # the range holds no measured count: uniform over it
            return torch.randint(lo, hi + 1, (n,), generator=g)
        return torch.multinomial(p, n, replacement=True, generator=g) + 1

    def sample_boxes(self, n: int, g: torch.Generator) -> torch.Tensor:
        """(n, 4) float32: width share, centre x, centre y (shares of the image), box aspect."""
        if n == 0:
            return torch.zeros(0, 4)
        comp = torch.multinomial(torch.tensor(self.weights, dtype=torch.float64), n, replacement=True, generator=g)
        z = torch.randn(n, 4, generator=g, dtype=torch.float64)
        L = torch.from_numpy(self._chol)[comp]  # (n, 4, 4)
        v = torch.tensor(self.means, dtype=torch.float64)[comp] + (L @ z[:, :, None])[:, :, 0]
        width = v[:, 0].exp().clamp(*WIDTH_RANGE)
        aspect = v[:, 3].exp().clamp(*ASPECT_RANGE)
        return torch.stack([width, v[:, 1].clamp(0, 1), v[:, 2].clamp(0, 1), aspect], 1).float()

    # -- measuring --------------------------------------------------------------------------------
    @classmethod
    def from_boxes(cls, boxes: np.ndarray, counts: np.ndarray, components: int = 4, seed: int = 0,
                   source: str = "") -> ScenePrior:
        """Fit to boxes (N, 4) = (width share, x, y, aspect) and plates per image (M,) (EM, diagonal
        start from k-means++ on the standardised features; a fixed seed gives the same prior)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        b = b[np.isfinite(b).all(1) & (b[:, 0] > 0) & (b[:, 3] > 0)]
        if len(b) < 4 * components:
            raise ValueError(f"ScenePrior: {len(b)} usable boxes are too few for {components} components "
                             f"(need at least {4 * components})")
        X = np.stack([np.log(b[:, 0]), b[:, 1], b[:, 2], np.log(b[:, 3])], 1)
        weights, means, covs = _em(X, components, seed)
        c = np.asarray(counts, dtype=np.int64)
        c = c[(c >= 1)]
        hist = np.bincount(np.minimum(c, MAX_PLATES), minlength=MAX_PLATES + 1)[1:].astype(np.float64)
        hist = hist[: max(1, int(np.nonzero(hist)[0].max()) + 1)] if hist.any() else np.ones(1)
        r = lambda a: np.round(a, 6).tolist()  # noqa: E731
        return cls(tuple(r(weights / weights.sum())), tuple(map(tuple, r(means))),
                   tuple(tuple(map(tuple, m)) for m in r(covs)), tuple(r(hist / hist.sum())), source)

    @classmethod
    def from_coco(cls, path: str | Path, components: int = 4, image_ids=None, seed: int = 0) -> ScenePrior:
        """Measure a prior from a COCO file's plate boxes (the plateaug.ScenePhotos rules apply);
        `image_ids`: only these images (e.g. a training split)."""
        from .photos import ScenePhotos

        photos = ScenePhotos(path)
        keep = None if image_ids is None else set(image_ids)
        rows, counts = [], []
        for p in photos.photos:
            if keep is not None and p.image_id not in keep:
                continue
            counts.append(len(p.boxes))
            for x0, y0, x1, y1 in p.boxes:
                rows.append(((x1 - x0) / p.width, (x0 + x1) / 2 / p.width, (y0 + y1) / 2 / p.height,
                             (x1 - x0) / max(y1 - y0, 1e-6)))
        return cls.from_boxes(np.asarray(rows), np.asarray(counts), components, seed,
                              source=f"{len(rows)} boxes of {len(counts)} photos of {Path(path).name}")

    # -- files ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write as TOML (read back with `load`)."""
        lines = [f"# plateaug scene prior: a Gaussian mixture over ({', '.join(DIMS)}) of plate boxes",
                 f"source = {_toml_str(self.source)}", f"plates_per_image = {list(self.plates_per_image)}", ""]
        for w, m, c in zip(self.weights, self.means, self.covariances):
            lines += ["[[component]]", f"weight = {w}", f"mean = {list(m)}",
                      "covariance = [" + ", ".join(str(list(row)) for row in c) + "]", ""]
        Path(path).write_text("\n".join(lines), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ScenePrior:
        """Read a prior written by `save`; a malformed or oversized file is a ValueError naming it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"scene prior {path} does not exist")
        if path.stat().st_size > MAX_PRIOR_BYTES:
            raise ValueError(f"scene prior {path}: larger than {MAX_PRIOR_BYTES // 1024} KiB")
        try:
            d = tomllib.loads(path.read_text(encoding="utf-8"))
            comps = d["component"]
            if not isinstance(comps, list):
                raise TypeError("[[component]] must be an array of tables")
            return cls(tuple(float(c["weight"]) for c in comps), tuple(tuple(map(float, c["mean"])) for c in comps),
                       tuple(tuple(tuple(map(float, row)) for row in c["covariance"]) for c in comps),
                       tuple(map(float, d["plates_per_image"])), str(d.get("source", "")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"scene prior {path}: {type(e).__name__}: {e}") from None


def default_prior() -> ScenePrior:
    """The shipped prior (plateaug/stream/scenes/prior.toml; what it was measured on is its `source`)."""
    return ScenePrior.load(DEFAULT_PRIOR)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _em(X: np.ndarray, K: int, seed: int, iters: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian mixture (weights (K,), means (K, D), covariances (K, D, D)) by EM."""
    rng = np.random.default_rng(seed)
    N, D = X.shape
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd
    centres = [Z[rng.integers(N)]]
    for _ in range(K - 1):  # k-means++ start
        d2 = np.min([((Z - c) ** 2).sum(1) for c in centres], 0)
        centres.append(Z[rng.choice(N, p=d2 / d2.sum())])
    means = np.asarray(centres) * sd + mu
    covs = np.stack([np.cov(X.T) + 1e-4 * np.eye(D)] * K)
    weights = np.full(K, 1.0 / K)
    reg = 1e-4 * np.eye(D)
    prev = -np.inf
    for _ in range(iters):
        logp = np.stack([_log_normal(X, means[k], covs[k]) + math.log(max(weights[k], 1e-12)) for k in range(K)], 1)
        top = logp.max(1, keepdims=True)
        ll = (top[:, 0] + np.log(np.exp(logp - top).sum(1))).sum()
        resp = np.exp(logp - top)
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0) + 1e-12
        weights = nk / N
        means = (resp.T @ X) / nk[:, None]
        for k in range(K):
            d = X - means[k]
            covs[k] = (resp[:, k, None] * d).T @ d / nk[k] + reg
        if ll - prev < 1e-6 * abs(ll):
            break
        prev = ll
    return weights, means, covs


def _log_normal(X: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    L = np.linalg.cholesky(cov)
    y = np.linalg.solve(L, (X - mean).T)
    return -0.5 * (y**2).sum(0) - np.log(np.diag(L)).sum() - 0.5 * len(mean) * math.log(2 * math.pi)
