"""Image tasks of the papers: completion of occluded halves, its MSE, log-likelihood, samples.

The protocol is Poon and Domingos' (UAI 2011), which DCSPN (Butz et al. 2019) and DGC-SPN
(van de Wolfshaar and Pronobis 2020, section 5.1) follow:

1. **Standardize each image with its own statistics.** P&D's ``Dataset.setInstance`` computes
   the mean and the population standard deviation of *all* pixels of an image (train and test
   images alike) and models ``z = (x - mean) / std``
   (:func:`pcircuits.datasets.standardize_images` does this).
2. **Occlude** a half of each standardized test image (:func:`left_half`,
   :func:`bottom_half`, ...): the occluded pixels become NaN, i.e. they are marginalized.
3. **Complete** the occluded pixels (:func:`complete`): ``"posterior-mean"`` sets each to the
   sum of its leaf components' means weighted by their marginal posteriors given the visible
   half (P&D's code, DGC-SPN 5.1); ``"mpe"`` takes the approximate MPE (max-product, Viterbi).
4. **Map back with the same statistics** and score (:func:`completion_mse`): P&D's
   ``Utils.getIntVal`` turns a value ``p`` into the grey level ``p * std + mean`` with the
   image's full-image ``mean`` and ``std`` from step 1. The MSE is taken on the 0..255 scale
   over the occluded pixels only.

Step 4 reuses statistics that were computed with the occluded pixels: that is what the papers
did (their tables are only comparable under the same protocol), and it gives the model each
image's brightness and contrast for free. :func:`completion_mse` therefore takes ``mean`` and
``std`` as arguments, so a stricter protocol (statistics of the visible pixels only, e.g.
``standardize_images`` of the occluded images) is one argument away. P&D wrote completions
as integers truncated toward zero and did not clip them to 0..255; here completions stay
floating-point and unclipped (truncation changes an MSE of several hundred by about 0.5).
"""
from __future__ import annotations

import math
import numpy as np

from .backend import to_numpy

__all__ = [
    "MASKS", "left_half", "right_half", "top_half", "bottom_half", "center", "make_mask", "occlude",
    "complete", "completion_errors", "completion_mse", "test_log_likelihood", "bits_per_dimension",
    "unconditional_samples", "conditional_samples",
]


# ---- occlusion masks ----------------------------------------------------------------------

def _check_shape(height: int, width: int, where: str) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2:
            raise ValueError(f"{where}: {name} must be an int of at least 2, got {value!r}")


def _mask(height: int, width: int, rows: slice, cols: slice, where: str) -> np.ndarray:
    _check_shape(height, width, where)
    mask = np.zeros((int(height), int(width)), dtype=bool)
    mask[rows, cols] = True
    return mask


def left_half(height: int, width: int) -> np.ndarray:
    """Occlude the left ``width // 2`` columns.

    Returns
    -------
    ndarray of bool, shape (height, width)
        True where a pixel is occluded (to be completed), False where it is visible.
    """
    return _mask(height, width, slice(None), slice(0, width // 2), "left_half")


def right_half(height: int, width: int) -> np.ndarray:
    """Occlude the right ``width // 2`` columns; shape (height, width), True = occluded."""
    return _mask(height, width, slice(None), slice(width - width // 2, None), "right_half")


def top_half(height: int, width: int) -> np.ndarray:
    """Occlude the top ``height // 2`` rows; shape (height, width), True = occluded."""
    return _mask(height, width, slice(0, height // 2), slice(None), "top_half")


def bottom_half(height: int, width: int) -> np.ndarray:
    """Occlude the bottom ``height // 2`` rows; shape (height, width), True = occluded."""
    return _mask(height, width, slice(height - height // 2, None), slice(None), "bottom_half")


def center(height: int, width: int) -> np.ndarray:
    """Occlude the central block of ``height // 2`` rows and ``width // 2`` columns.

    The block starts at row ``height // 4`` and column ``width // 4``; shape (height, width),
    True = occluded.
    """
    rows = slice(height // 4, height // 4 + height // 2)
    cols = slice(width // 4, width // 4 + width // 2)
    return _mask(height, width, rows, cols, "center")


#: The occlusion masks by name (``pcircuits inpaint --mask NAME``).
MASKS = {"left": left_half, "right": right_half, "top": top_half, "bottom": bottom_half, "center": center}


def make_mask(name: str, shape) -> np.ndarray:
    """The occlusion mask ``name`` (a key of :data:`MASKS`) for images of ``shape = (height, width)``.

    A third entry of ``shape`` (channels) repeats the mask over the channels.

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    if name not in MASKS:
        raise ValueError(f"make_mask: unknown mask {name!r}; choose one of {sorted(MASKS)}")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"make_mask: shape must be (height, width) or (height, width, channels), got {shape}")
    mask = MASKS[name](shape[0], shape[1])
    if len(shape) == 3:
        mask = np.repeat(mask[:, :, None], shape[2], axis=2)
    return mask


def _flat_images(images, where: str, name: str = "images") -> np.ndarray:
    arr = np.asarray(to_numpy(images), dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{where}: {name} must have shape (n, num_pixels) or (n, height, width[, channels]), "
                         f"got shape {arr.shape}")
    return arr.reshape(len(arr), -1)


def _flat_mask(mask, num_images: int, num_pixels: int, where: str) -> np.ndarray:
    """``mask`` as a bool array of shape (num_images, num_pixels): one mask for all, or one per image."""
    m = np.asarray(to_numpy(mask))
    if m.dtype != bool:
        raise TypeError(f"{where}: mask must be a bool array (True = occluded), got dtype {m.dtype}")
    if m.size == num_pixels:
        return np.broadcast_to(m.reshape(1, num_pixels), (num_images, num_pixels))
    if m.size == num_images * num_pixels and m.shape[0] == num_images:
        return m.reshape(num_images, num_pixels)
    raise ValueError(f"{where}: mask of shape {m.shape} fits neither one image of {num_pixels} pixels nor "
                     f"{num_images} images of {num_pixels} pixels")


def occlude(images, mask) -> np.ndarray:
    """Copy of ``images`` with the occluded pixels set to NaN (missing, marginalized).

    Parameters
    ----------
    images : array_like, shape (n, num_pixels) or (n, height, width[, channels])
    mask : array_like of bool
        True where occluded; one mask for all images (``num_pixels`` entries in any shape) or
        one per image (shape (n, ...)).

    Returns
    -------
    ndarray of float64, the shape of ``images``
    """
    arr = np.asarray(to_numpy(images), dtype=np.float64)
    flat = _flat_images(arr, "occlude").copy()
    flat[_flat_mask(mask, flat.shape[0], flat.shape[1], "occlude")] = np.nan
    return flat.reshape(arr.shape)


# ---- completion ---------------------------------------------------------------------------

def _batches(num: int, batch_size: int | None, progress: bool, description: str):
    """Slices of ``batch_size`` rows covering ``num`` rows, wrapped in a progress bar if asked."""
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    size = max(num if batch_size is None else int(batch_size), 1)
    parts = [slice(start, start + size) for start in range(0, num, size)]
    if progress:
        from tqdm.auto import tqdm
        return tqdm(parts, desc=description, unit="batch")
    return parts


def complete(program, images, mask, *, method: str = "posterior-mean", batch_size: int | None = 256,
             progress: bool = False) -> np.ndarray:
    """Complete the occluded pixels of ``images`` with ``program``.

    Parameters
    ----------
    program : Program
        A compiled circuit over ``num_pixels`` variables (``circuit.compile()``), trained on
        data prepared as ``images`` are (e.g. standardized per image).
    images : array_like, shape (n, num_pixels) or (n, height, width[, channels])
        The complete images, in the model's units; the occluded pixels' values are ignored.
    mask : array_like of bool
        True where occluded (see :func:`occlude`).
    method : {"posterior-mean", "mpe"}
        ``"posterior-mean"``: each occluded pixel is the posterior-weighted mean of its leaf
        components (DGC-SPN 5.1, P&D's code); ``"mpe"``: the approximate most probable
        explanation (max-product and Viterbi back-tracking).
    batch_size : int or None
        Images per pass (None: as many as fit ``program.memory_budget``).
    progress : bool
        Show a progress bar over the batches.

    Returns
    -------
    ndarray of float64, the shape of ``images``
        The visible pixels exactly as given, the occluded ones completed.
    """
    if method not in ("posterior-mean", "mpe"):
        raise ValueError(f"complete: method must be 'posterior-mean' or 'mpe', got {method!r}")
    arr = np.asarray(to_numpy(images), dtype=np.float64)
    flat = _flat_images(arr, "complete")
    if flat.shape[1] != program.num_variables:
        raise ValueError(f"complete: images have {flat.shape[1]} pixels but the program has "
                         f"{program.num_variables} variables")
    hidden = _flat_mask(mask, flat.shape[0], flat.shape[1], "complete")
    evidence = np.where(hidden, np.nan, flat)
    out = np.empty_like(flat)
    for part in _batches(len(flat), batch_size, progress, f"completing ({method})"):
        out[part] = np.asarray(to_numpy(program.inpaint(evidence[part], method=method, batch_size=batch_size)),
                               dtype=np.float64)
    out = np.where(hidden, out, flat)
    return out.reshape(arr.shape)


def completion_errors(original, completed, mask, *, mean=None, std=None, max_value: float = 255.0) -> np.ndarray:
    """Per-image mean squared error over the occluded pixels, on the 0..255 pixel scale.

    Both images are first mapped back to grey levels with each image's own statistics,
    ``x = z * std + mean`` (P&D's ``getIntVal``; see the module notes), then from the data's
    scale ``0..max_value`` to ``0..255`` (multiplied by ``255 / max_value``).

    Parameters
    ----------
    original, completed : array_like, shape (n, num_pixels) or (n, height, width[, channels])
        The true images and their completions, in the model's units.
    mask : array_like of bool
        True where occluded (see :func:`occlude`); only these pixels are scored.
    mean, std : array_like, shape (n,), optional
        The statistics each image was standardized with (as returned by
        :func:`pcircuits.datasets.standardize_images`); None when the images are grey levels
        already.
    max_value : float
        The largest grey level of the data (255 for 8-bit images, 16 for the 8x8 digits).

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    where = "completion_errors"
    truth = _flat_images(original, where, "original")
    guess = _flat_images(completed, where, "completed")
    if truth.shape != guess.shape:
        raise ValueError(f"{where}: original has shape {truth.shape} (flattened) but completed has {guess.shape}")
    if (mean is None) != (std is None):
        raise ValueError(f"{where}: give both mean and std (images standardized per image) or neither")
    if mean is not None:
        mean = np.asarray(to_numpy(mean), dtype=np.float64).reshape(-1)
        std = np.asarray(to_numpy(std), dtype=np.float64).reshape(-1)
        if not len(mean) == len(std) == len(truth):
            raise ValueError(f"{where}: {len(truth)} images but mean has {len(mean)} and std {len(std)} entries")
        truth = truth * std[:, None] + mean[:, None]
        guess = guess * std[:, None] + mean[:, None]
    if not (isinstance(max_value, (int, float, np.number)) and max_value > 0):
        raise ValueError(f"{where}: max_value must be a positive number, got {max_value!r}")
    hidden = _flat_mask(mask, truth.shape[0], truth.shape[1], where)
    counts = hidden.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError(f"{where}: the mask occludes no pixel of image {int(np.argmin(counts))}")
    scored = guess[hidden]
    if not np.all(np.isfinite(scored)):
        raise ValueError(f"{where}: {int(np.sum(~np.isfinite(scored)))} occluded pixels of completed are not "
                         f"finite (NaN or inf)")
    squared = np.where(hidden, (guess - truth) * (255.0 / max_value), 0.0) ** 2
    return squared.sum(axis=1) / counts


def completion_mse(original, completed, mask, *, mean=None, std=None, max_value: float = 255.0) -> float:
    """Mean squared error over the occluded pixels on the 0..255 scale, the papers' metric.

    The average over images of :func:`completion_errors` (for the usual one mask for all
    images this is also the average over all occluded pixels). Arguments as in
    :func:`completion_errors`.
    """
    return float(np.mean(completion_errors(original, completed, mask, mean=mean, std=std, max_value=max_value)))


# ---- likelihoods --------------------------------------------------------------------------

def test_log_likelihood(program, data, *, batch_size: int | None = 256, progress: bool = False) -> float:
    """Average log-likelihood (nats) per example of ``data``, shape (n, num_variables).

    Multi-root programs are scored by their first root.
    """
    ll = np.asarray(to_numpy(program.log_likelihood(_flat_images(data, "test_log_likelihood", "data"),
                                                    batch_size=batch_size, progress=progress)))
    if ll.ndim == 2:
        ll = ll[:, 0]
    return float(np.mean(ll))


test_log_likelihood.__test__ = False  # not a pytest test despite its name


def bits_per_dimension(ll, num_dims: int, *, scale=1.0) -> float:
    """Bits per dimension of discrete data from the log-likelihoods of a model of it.

    ``bpd = mean_i [ -ll_i / (D ln 2) + log2(scale_i) ]``.

    ``scale`` says how many steps of the data's grid (grey levels) one unit of the model's
    variables spans. A model of ``y = (x - a) / scale`` (``x`` the integer grey levels) has the
    density ``p_x(x) = p_y(y) / scale^D``, and the probability of the unit bin around ``x`` is
    about ``p_x(x)``, so ``log2 P(x) = ll / ln 2 - D log2(scale)``:

    * discrete leaves (Binomial, Categorical) over the grey levels: ``ll`` is a log-probability,
      ``scale = 1`` and ``bpd = -ll / (D ln 2)``;
    * a continuous model of ``x / 256`` (data in [0, 1)): ``scale = 256``, which adds 8 bits;
    * a continuous model of per-image standardized images: ``scale = std_i`` (each image's
      standard deviation in grey levels), per image. This scores the pixels *given* each
      image's mean and standard deviation (standardization is not invertible: it drops those
      two numbers), so such figures compare only with models of the same preprocessing.

    Parameters
    ----------
    ll : float or array_like, shape (n,)
        Log-likelihoods in nats (one per example, or their average).
    num_dims : int
        ``D``, variables per example.
    scale : float or array_like, shape (n,)
        Grid steps per model unit; one value, or one per example.

    Returns
    -------
    float
    """
    if not isinstance(num_dims, (int, np.integer)) or isinstance(num_dims, bool) or num_dims < 1:
        raise ValueError(f"bits_per_dimension: num_dims must be a positive int, got {num_dims!r}")
    ll = np.asarray(to_numpy(ll), dtype=np.float64).reshape(-1)
    scale = np.asarray(to_numpy(scale), dtype=np.float64).reshape(-1)
    if scale.size not in (1, ll.size):
        raise ValueError(f"bits_per_dimension: scale has {scale.size} entries for {ll.size} log-likelihoods")
    if not np.all(scale > 0):
        raise ValueError("bits_per_dimension: every scale must be positive")
    return float(np.mean(-ll / (num_dims * math.log(2.0)) + np.log2(scale)))


# ---- samples ------------------------------------------------------------------------------

def unconditional_samples(program, num_samples: int, *, seed: int = 0) -> np.ndarray:
    """``num_samples`` samples of the model, shape (num_samples, num_variables), as NumPy."""
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"unconditional_samples: num_samples must be a positive int, got {num_samples!r}")
    return np.asarray(to_numpy(program.sample(int(num_samples), seed=seed)), dtype=np.float64)


def conditional_samples(program, images, mask, *, seed: int = 0, batch_size: int | None = 256) -> np.ndarray:
    """Sample the occluded pixels of each image from ``p(occluded | visible)``.

    Parameters
    ----------
    images : array_like, shape (n, num_pixels) or (n, height, width[, channels])
    mask : array_like of bool
        True where occluded (see :func:`occlude`).

    Returns
    -------
    ndarray of float64, the shape of ``images``
        The visible pixels as given, the occluded ones sampled.
    """
    arr = np.asarray(to_numpy(images), dtype=np.float64)
    flat = _flat_images(arr, "conditional_samples")
    hidden = _flat_mask(mask, flat.shape[0], flat.shape[1], "conditional_samples")
    evidence = np.where(hidden, np.nan, flat)
    out = np.empty_like(flat)
    for number, part in enumerate(_batches(len(flat), batch_size, False, "")):
        drawn = program.sample(evidence=evidence[part], seed=None if seed is None else seed + number)
        out[part] = np.asarray(to_numpy(drawn), dtype=np.float64)
    return np.where(hidden, out, flat).reshape(arr.shape)

