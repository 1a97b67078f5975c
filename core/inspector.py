"""Look inside a model for one digit: probabilities, every layer's output, filters,
gradient saliency, Grad-CAM, occlusion sensitivity and a robustness probe.

One multi-output *feature model* per Keras model (built from ``model.inputs``) returns
the probabilities and every layer's output in a single call, compiled once with
``tf.function`` (XLA when it is available). :func:`inspector_for` keeps one per model
(in :mod:`core.model_cache`), so a page pays the compile cost once per model and ~1 ms
per digit afterwards. Never ``model.predict``: it sets up a whole data pipeline for one
image.

Turning the maps into pictures (colour maps, overlays, grids) is :mod:`core.imaging`'s
job. No streamlit here.
"""
from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.data import to_float
from core.errors import LayerLabError
from core.evaluation import batched_probabilities, model_fingerprint
from core.imaging import unit, upsample
from core.model_cache import cached

CONV_TYPES = ("Conv2D",)
POOL_TYPES = ("MaxPooling2D", "AveragePooling2D")
DENSE_TYPES = ("Dense",)
UNSURE_TOP = 0.6          # below this confidence the model counts as unsure
UNSURE_MARGIN = 0.25      # … or when the runner-up is this close
_WORKER_PREFIX = "layerlab-inspect"
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=_WORKER_PREFIX)


def on_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a TensorFlow call on the one long-lived inspection thread.

    A compiled function's first call on a *new* thread costs 10–50 ms (TensorFlow keeps
    per-thread state), and Streamlit runs every rerun on a new thread: routing the
    single-image calls through one warm thread keeps each stroke at a few milliseconds.
    """
    if threading.current_thread().name.startswith(_WORKER_PREFIX):
        return fn(*args)
    return _worker.submit(fn, *args).result()


# -- results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerView:
    """One layer of the inspected model: name, Keras type, kind and output shape."""

    name: str
    type: str
    kind: str                         # "conv", "pool", "dense" or "other"
    shape: tuple[int, ...]            # without the batch axis


@dataclass
class Inspection:
    """The model's view of one digit."""

    probabilities: np.ndarray                          # (10,)
    activations: dict[str, np.ndarray] = field(default_factory=dict)  # name -> no batch
    seconds: float = 0.0

    @property
    def ranking(self) -> np.ndarray:
        return np.argsort(-self.probabilities)

    @property
    def top(self) -> int:
        return int(self.ranking[0])

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.top])

    def uncertainty(self) -> str | None:
        """A sentence when the model is unsure (low confidence or a close runner-up)."""
        first, second = (int(c) for c in self.ranking[:2])
        p1, p2 = float(self.probabilities[first]), float(self.probabilities[second])
        if p1 - p2 < UNSURE_MARGIN:
            return (f"The model is unsure: it is torn between {first} ({p1:.0%}) and "
                    f"{second} ({p2:.0%}).")
        if p1 < UNSURE_TOP:
            return (f"The model is unsure: its best guess, {first}, gets only {p1:.0%}.")
        return None


@dataclass
class Explanation:
    """Where the model looked, each map 28×28 in [0, 1] (None when not available)."""

    target: int
    saliency: np.ndarray
    gradcam: np.ndarray | None
    gradcam_layer: str | None
    occlusion: np.ndarray | None = None
    gradcam_method: str = "Grad-CAM"   # "HiResCAM" when Grad-CAM is flat for this digit


# -- the inspector -----------------------------------------------------------------------
def layer_kind(layer_type: str) -> str:
    """What the inspector draws for a Keras layer type: conv, pool, dense, deskew (the
    straightened digit, core/deskew.py) or other.

    >>> layer_kind("Conv2D"), layer_kind("MaxPooling2D"), layer_kind("Dropout")
    ('conv', 'pool', 'other')
    """
    if layer_type == "Deskew":
        return "deskew"
    if layer_type in CONV_TYPES:
        return "conv"
    if layer_type in POOL_TYPES:
        return "pool"
    if layer_type in DENSE_TYPES:
        return "dense"
    return "other"


class Inspector:
    """A model's feature model and its compiled single-image functions."""

    def __init__(self, model: Any, jit_compile: bool = True) -> None:
        import keras  # noqa: PLC0415 - heavy, only when a page inspects
        import tensorflow as tf  # noqa: PLC0415

        if not model.inputs:
            raise LayerLabError("This model has no defined input, so its layers cannot be "
                                "inspected. Rebuild it from a spec.")
        # Held weakly: the cache that keeps this inspector is keyed by the model.
        self._model = weakref.ref(model)
        layers = [layer for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
        self.layers = [LayerView(layer.name, type(layer).__name__,
                                 layer_kind(type(layer).__name__),
                                 tuple(int(d) for d in layer.output.shape[1:]))
                       for layer in layers]
        outputs = [model.outputs[0]] + [layer.output for layer in layers]
        last = layers[-1] if layers else None
        self._logit_layer = None
        if (last is not None and type(last).__name__ == "Dense"
                and getattr(last.activation, "__name__", "") == "softmax"):
            self._logit_layer = last
            outputs.append(last.input)          # to recompute pre-softmax logits
        convs = [layer for layer in layers if type(layer).__name__ in CONV_TYPES]
        self.gradcam_layer = convs[-1].name if convs else None
        self._names = [layer.name for layer in layers]
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.feature_model = keras.Model(inputs, outputs, name=f"{model.name}_features")
        self._lock = threading.Lock()
        self._misclassified: tuple[str, np.ndarray] | None = None   # (weights, indices)
        signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)]
        fm = self.feature_model

        def forward(x):
            return fm(x, training=False)

        self._jit = jit_compile
        self._forward = tf.function(forward, input_signature=signature,
                                    jit_compile=jit_compile)
        self._forward_plain = tf.function(forward, input_signature=signature)
        self._explain = tf.function(self._explain_graph, reduce_retracing=True)

    @property
    def model(self) -> Any:
        """The inspected Keras model."""
        model = self._model()
        if model is None:
            raise LayerLabError("This model is no longer loaded; choose it again.")
        return model

    # -- forward pass --------------------------------------------------------------------
    def _call(self, x: np.ndarray) -> list[np.ndarray]:
        return on_worker(self._call_here, x)

    def _call_here(self, x: np.ndarray) -> list[np.ndarray]:
        if self._jit:
            try:
                return [np.asarray(t) for t in self._forward(x)]
            except Exception:  # XLA missing or an unsupported op: plain graph instead
                self._jit = False
        return [np.asarray(t) for t in self._forward_plain(x)]

    def run(self, digit: np.ndarray) -> Inspection:
        """Probabilities and every layer's output for one 28×28 digit, in one call."""
        start = time.perf_counter()
        outs = self._call(to_float(digit))
        activations = {name: out[0] for name, out in zip(self._names, outs[1:])}
        return Inspection(outs[0][0].astype(np.float32), activations,
                          time.perf_counter() - start)

    def probabilities(self, digits: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Softmax outputs for a small batch of digits (N, 28, 28) uint8 -> (N, 10)."""
        x = to_float(digits)
        if len(x) > batch_size:          # a big batch: no need to queue behind the worker
            return batched_probabilities(self.model, x, batch_size)
        return on_worker(batched_probabilities, self.model, x, batch_size)

    def misclassified(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Indices of the labelled images the model gets wrong (kept until its weights
        change: a resumed run trains the very same model object further)."""
        weights = model_fingerprint(self.model)
        with self._lock:
            if self._misclassified is None or self._misclassified[0] != weights:
                probs = self.probabilities(images, batch_size=1000)
                self._misclassified = (weights, np.flatnonzero(probs.argmax(axis=1)
                                                               != np.asarray(labels)))
        return self._misclassified[1]

    # -- what it looked at ---------------------------------------------------------------
    def _explain_graph(self, x, target):
        import tensorflow as tf  # noqa: PLC0415

        conv_index = (self._names.index(self.gradcam_layer) + 1
                      if self.gradcam_layer else None)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            outs = self.feature_model(x, training=False)
            if self._logit_layer is not None:
                kernel = self._logit_layer.kernel
                logits = tf.matmul(tf.cast(outs[-1], kernel.dtype), kernel)
                if self._logit_layer.bias is not None:
                    logits = logits + self._logit_layer.bias
                score = tf.gather(logits, target, axis=1)
            else:
                score = tf.math.log(tf.gather(outs[0], target, axis=1) + 1e-9)
            total = tf.reduce_sum(score)
        grad_x = tape.gradient(total, x)
        if conv_index is None:
            return grad_x, tf.zeros([1, 1, 1, 1]), tf.zeros([1, 1, 1, 1])
        fmap = outs[conv_index]
        grad_a = tape.gradient(total, fmap)
        return grad_x, fmap, grad_a

    def explain(self, digit: np.ndarray, target: int | None = None, smooth: int = 0,
                occlusion: bool = False) -> Explanation:
        """Gradient saliency (SmoothGrad when ``smooth`` > 0), Grad-CAM on the last conv
        layer, and optionally occlusion sensitivity, for class ``target`` (default: the
        predicted one)."""
        import tensorflow as tf  # noqa: PLC0415

        x = to_float(digit)
        if target is None:
            target = self.run(digit).top
        batch = x
        if smooth > 0:
            rng = np.random.default_rng(0)
            noise = rng.normal(0.0, 0.15, size=(smooth, *x.shape[1:])).astype(np.float32)
            batch = np.concatenate([x, np.clip(x + noise, 0.0, 1.0)])
        grad_x, fmap, grad_a = on_worker(self._explain, tf.convert_to_tensor(batch),
                                         tf.constant(int(target)))
        saliency = np.abs(np.asarray(grad_x)).mean(axis=0)[..., 0]
        saliency = unit(saliency)
        cam, method = None, "Grad-CAM"
        if self.gradcam_layer is not None:
            a, g = np.asarray(fmap)[0], np.asarray(grad_a)[0]
            cam = np.maximum((a * g.mean(axis=(0, 1))).sum(axis=-1), 0.0)
            if cam.max(initial=0.0) <= 0.0:
                # Grad-CAM's channel-averaged weights can cancel out to a map that is
                # negative everywhere; HiResCAM (gradient × activation per position)
                # keeps the spatial detail and is never flat where the score depends.
                cam = np.maximum((a * g).sum(axis=-1), 0.0)
                method = "HiResCAM"
            cam = unit(upsample(cam, x.shape[1:3]))
        occ = self.occlusion(digit, target) if occlusion else None
        return Explanation(int(target), saliency, cam, self.gradcam_layer, occ, method)

    def occlusion(self, digit: np.ndarray, target: int, patch: int = 6,
                  stride: int = 2) -> np.ndarray:
        """How much the target's probability drops when a patch×patch square is blacked
        out, per pixel (averaged over the squares covering it), scaled to [0, 1]."""
        img = to_float(digit)[0, ..., 0]
        h, w = img.shape
        spots = [(r, c) for r in range(0, h - patch + 1, stride)
                 for c in range(0, w - patch + 1, stride)]
        batch = np.repeat(img[None], len(spots) + 1, axis=0)
        for i, (r, c) in enumerate(spots, start=1):
            batch[i, r:r + patch, c:c + patch] = 0.0
        probs = self.probabilities(batch[..., None])
        drop = probs[0, target] - probs[1:, target]
        heat = np.zeros((h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        for d, (r, c) in zip(drop, spots):
            heat[r:r + patch, c:c + patch] += d
            count[r:r + patch, c:c + patch] += 1
        heat = np.where(count > 0, heat / np.maximum(count, 1), 0.0)
        return unit(np.maximum(heat, 0.0))

    def warm_up(self) -> "Inspector":
        """Trace and compile every function once, so the first digit is as fast as the
        rest (a page shows a spinner for this instead of a slow first stroke)."""
        blank = np.zeros(self.model.inputs[0].shape[1:3], np.uint8)
        blank[8:20, 12:16] = 255
        self.run(blank)
        self.explain(blank, 0)
        self.probabilities(np.stack([img for _, img in robustness_variants(blank)]))
        return self

    # -- weights -------------------------------------------------------------------------
    def conv_kernel(self, name: str) -> np.ndarray:
        """The kernel (k, k, in, out) of a Conv2D layer as NumPy."""
        layer = self.model.get_layer(name)
        return np.asarray(layer.kernel)

    def views(self, *kinds: str) -> list[LayerView]:
        return [v for v in self.layers if not kinds or v.kind in kinds]


def inspector_for(model: Any) -> Inspector:
    """The model's :class:`Inspector`, built and compiled on first use and then kept
    (by :mod:`core.model_cache`; lookups for other models never wait for a compile)."""
    return cached(model, "inspector", lambda: Inspector(model).warm_up())


# -- pure NumPy helpers ------------------------------------------------------------------
def filter_images(kernel: np.ndarray, channel: int | None = None) -> np.ndarray:
    """A conv kernel (k, k, in, out) -> one k×k image per output filter (out, k, k):
    the weights seen by input ``channel``, or their mean over inputs when None.

    >>> kernel = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
    >>> filter_images(kernel).shape, float(filter_images(kernel, 1)[0, 0, 0])
    ((4, 3, 3), 4.0)
    """
    kernel = np.asarray(kernel)
    if channel is None:
        sel = kernel.mean(axis=2)
    else:
        if not 0 <= channel < kernel.shape[2]:
            raise LayerLabError(f"Input channel {channel} does not exist; this layer has "
                                f"{kernel.shape[2]} input channels.")
        sel = kernel[:, :, channel, :]
    return np.moveaxis(sel, -1, 0)


def robustness_variants(digit: np.ndarray, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """The digit shifted, rotated and noisy: (label, uint8 28×28) pairs, original first.

    >>> variants = robustness_variants(np.zeros((28, 28), np.uint8))
    >>> len(variants), variants[0][0], variants[1][0]
    (11, 'original', 'shift left 4')
    """
    from PIL import Image  # noqa: PLC0415

    digit = np.asarray(digit, np.uint8)
    out: list[tuple[str, np.ndarray]] = [("original", digit)]

    def shift(dy: int, dx: int) -> np.ndarray:
        moved = np.zeros_like(digit)
        h, w = digit.shape
        src = digit[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        moved[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        return moved

    for label, dy, dx in (("shift left 4", 0, -4), ("shift right 4", 0, 4),
                          ("shift up 4", -4, 0), ("shift down 4", 4, 0)):
        out.append((label, shift(dy, dx)))
    img = Image.fromarray(digit, mode="L")
    for angle in (-30, -15, 15, 30):
        rotated = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
        out.append((f"rotate {angle:+d}°", np.asarray(rotated, np.uint8)))
    rng = np.random.default_rng(seed)
    noisy = digit.astype(np.float32) + rng.normal(0, 0.25 * 255, digit.shape)
    out.append(("noise sd 0.25", np.clip(noisy, 0, 255).astype(np.uint8)))
    speckled = digit.copy()
    flips = rng.random(digit.shape)
    speckled[flips < 0.05] = 255
    speckled[flips > 0.95] = 0
    out.append(("salt & pepper 10%", speckled))
    return out
