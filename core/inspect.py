"""Look inside a model for one digit: probabilities, every layer's output, filters,
gradient saliency, Grad-CAM, occlusion sensitivity and a robustness probe.

One multi-output *feature model* per Keras model (built from ``model.inputs``) returns
the probabilities and every layer's output in a single call, compiled once with
``tf.function`` (XLA when it is available). :func:`inspector_for` caches it on the model,
so a page pays the compile cost once per model and ~1 ms per digit afterwards. Never
``model.predict``: it sets up a whole data pipeline for one image.

Colour maps (:func:`colorize`, :func:`overlay`) are plain NumPy so pages can turn maps
into small images cheaply. No streamlit here.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.errors import LayerLabError

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
    if layer_type in CONV_TYPES:
        return "conv"
    if layer_type in POOL_TYPES:
        return "pool"
    if layer_type in DENSE_TYPES:
        return "dense"
    return "other"


def to_input(digit: np.ndarray) -> np.ndarray:
    """uint8 (28, 28) or (N, 28, 28) digits -> float32 (N, 28, 28, 1) in [0, 1]."""
    arr = np.asarray(digit)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


class Inspector:
    """A model's feature model and its compiled single-image functions."""

    def __init__(self, model: Any, jit_compile: bool = True) -> None:
        import keras  # noqa: PLC0415 - heavy, only when a page inspects
        import tensorflow as tf  # noqa: PLC0415

        if not model.inputs:
            raise LayerLabError("This model has no defined input, so its layers cannot be "
                                "inspected. Rebuild it from a spec.")
        self.model = model
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
        self._misclassified: np.ndarray | None = None
        signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)]
        fm = self.feature_model

        def forward(x):
            return fm(x, training=False)

        self._jit = jit_compile
        self._forward = tf.function(forward, input_signature=signature,
                                    jit_compile=jit_compile)
        self._forward_plain = tf.function(forward, input_signature=signature)
        self._explain = tf.function(self._explain_graph, reduce_retracing=True)

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
        outs = self._call(to_input(digit))
        activations = {name: out[0] for name, out in zip(self._names, outs[1:])}
        return Inspection(outs[0][0].astype(np.float32), activations,
                          time.perf_counter() - start)

    def probabilities(self, digits: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Softmax outputs for a small batch of digits (N, 28, 28) uint8 -> (N, 10)."""
        from core.evaluation import batched_probabilities  # noqa: PLC0415

        x = to_input(digits)
        if len(x) > batch_size:          # a big batch: no need to queue behind the worker
            return batched_probabilities(self.model, x, batch_size)
        return on_worker(batched_probabilities, self.model, x, batch_size)

    def misclassified(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Indices of the labelled images the model gets wrong (computed once, kept)."""
        with self._lock:
            if self._misclassified is None:
                probs = self.probabilities(images, batch_size=1000)
                self._misclassified = np.flatnonzero(probs.argmax(axis=1)
                                                     != np.asarray(labels))
        return self._misclassified

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

        x = to_input(digit)
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
        saliency = _unit(saliency)
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
            cam = _unit(_upsample(cam, x.shape[1:3]))
        occ = self.occlusion(digit, target) if occlusion else None
        return Explanation(int(target), saliency, cam, self.gradcam_layer, occ, method)

    def occlusion(self, digit: np.ndarray, target: int, patch: int = 6,
                  stride: int = 2) -> np.ndarray:
        """How much the target's probability drops when a patch×patch square is blacked
        out, per pixel (averaged over the squares covering it), scaled to [0, 1]."""
        img = to_input(digit)[0, ..., 0]
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
        return _unit(np.maximum(heat, 0.0))

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


_cache_lock = threading.Lock()


def inspector_for(model: Any) -> Inspector:
    """The model's cached :class:`Inspector` (built and compiled on first use)."""
    with _cache_lock:
        found = getattr(model, "_layerlab_inspector", None)
        if found is None:
            found = Inspector(model).warm_up()
            model._layerlab_inspector = found
    return found


# -- pure NumPy helpers ------------------------------------------------------------------
def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    top = float(a.max(initial=0.0))
    return a / top if top > 0 else np.zeros_like(a)


def _upsample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a small 2-D map to ``size`` (rows, cols)."""
    from PIL import Image  # noqa: PLC0415

    img = Image.fromarray(np.asarray(a, np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float32)


def filter_images(kernel: np.ndarray, channel: int | None = None) -> np.ndarray:
    """A conv kernel (k, k, in, out) -> one k×k image per output filter (out, k, k):
    the weights seen by input ``channel``, or their mean over inputs when None."""
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
    """The digit shifted, rotated and noisy: (label, uint8 28×28) pairs, original first."""
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


# Colour maps: anchor colours, linearly interpolated to 256 entries.
_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
                "#35b779", "#6ece58", "#b5de2b", "#fde725"],
    "diverging": ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7",
                  "#f4a582", "#d6604d", "#b2182b"],
    "heat": ["#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4"],
}


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 colour table for ``viridis``, ``diverging`` or ``heat``."""
    anchors = np.array([_hex(c) for c in _ANCHORS[name]], np.float64)
    pos = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, pos, anchors[:, i]) for i in range(3)], 1).round() \
        .astype(np.uint8)


def anchors(name: str) -> list[str]:
    """The colour map's anchor colours (for a matching chart legend)."""
    return list(_ANCHORS[name])


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "viridis",
             scale: int = 1) -> np.ndarray:
    """Map values to RGB uint8 with a colour table; ``scale`` enlarges each pixel."""
    v = np.asarray(values, np.float32)
    span = vmax - vmin if vmax > vmin else 1.0
    idx = np.clip(((v - vmin) / span * 255).round(), 0, 255).astype(np.uint8)
    rgb = lut(cmap)[idx]
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    return rgb


def overlay(digit: np.ndarray, heat: np.ndarray, scale: int = 8,
            alpha: float = 0.6) -> np.ndarray:
    """The digit in gray with a heat map (values in [0, 1]) blended on top, RGB uint8."""
    base = np.asarray(digit, np.float32) / 255.0
    base = np.repeat(base[..., None], 3, axis=2) * 255 * 0.55
    colour = colorize(heat, 0.0, 1.0, "heat").astype(np.float32)
    a = alpha * np.clip(np.asarray(heat, np.float32), 0, 1)[..., None] ** 0.7
    rgb = (base * (1 - a) + colour * a).round().astype(np.uint8)
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def tile_grid(tiles: np.ndarray, cols: int = 8, pad: int = 2,
              pad_value: int = 255) -> np.ndarray:
    """Tiles (N, h, w, 3) uint8 -> one grid image, row by row, ``pad`` px apart."""
    tiles = np.asarray(tiles, np.uint8)
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3),
                   pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = tiles[i]
    return grid


def enlarge(image: np.ndarray, target: int = 112) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the longer side nears
    ``target`` (small images stay crisp instead of being blurred by the browser)."""
    image = np.asarray(image)
    factor = max(1, target // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def labelled_grid(tiles: list[np.ndarray], labels: list[tuple[str, str]],
                  alert: list[bool], cols: int = 6, side: int = 84) -> np.ndarray:
    """Gray digit tiles in one RGB image, each with two lines of text underneath (e.g.
    the variant and the prediction); ``alert`` tiles get a red second line and frame.
    One image instead of many keeps a page's per-stroke media requests down."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    try:
        font = ImageFont.load_default(size=12)
    except (TypeError, OSError):            # Pillow without FreeType: the bitmap font
        font = ImageFont.load_default()
    pad, text_h = 12, 32
    rows = -(-len(tiles) // cols)
    width = cols * (side + pad) + pad
    height = rows * (side + text_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (tile, (top, bottom), bad) in enumerate(zip(tiles, labels, alert)):
        r, c = divmod(i, cols)
        x, y = pad + c * (side + pad), pad + r * (side + text_h + pad)
        img = Image.fromarray(np.asarray(tile, np.uint8)).convert("RGB") \
            .resize((side, side), Image.Resampling.NEAREST)
        canvas.paste(img, (x, y))
        if bad:
            draw.rectangle((x - 2, y - 2, x + side + 1, y + side + 1), outline=(214, 39, 40),
                           width=2)
        draw.text((x + side / 2, y + side + 3), top, fill=(80, 80, 80), font=font,
                  anchor="ma")
        draw.text((x + side / 2, y + side + 17), bottom, font=font, anchor="ma",
                  fill=(214, 39, 40) if bad else (20, 20, 20))
    return np.asarray(canvas)
