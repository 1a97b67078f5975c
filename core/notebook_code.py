"""The fixed parts of the code :mod:`core.notebook` generates: plain Keras, NumPy and
matplotlib, written for a reader (comments say why).

Each piece mirrors the app: :data:`DATA_CODE` the subset and split of
:mod:`core.data`, :data:`SCHEDULES` :func:`core.recipe.lr_at`, :data:`STEP_CALLBACK`
:class:`core.callbacks.StepLearningRate`, :data:`BATCH_NORM_CODE`
:func:`core.calibration.recalibrate_batch_norm`, :data:`SMOOTHED_LOSS_CODE`
:func:`core.training.make_loss`; tests/test_notebook_code.py checks each against the
original.
"""

SETUP_CODE = """\
import math
import os

# Keras 3 on TensorFlow, as in Layer Lab: tf.data feeds the batches.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras import layers
"""

DATA_CODE = '''\
def load_mnist():
    """MNIST as uint8 arrays: the file MNIST_NPZ names, else Keras' loader (its cache,
    then a download), in the order Layer Lab looks."""
    path = os.environ.get("MNIST_NPZ")
    if path:
        with np.load(path, allow_pickle=False) as data:
            return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])
    return keras.datasets.mnist.load_data()


def stratified_split(labels, fraction, seed):
    """Indices (keep, held_out): `fraction` of each class held out, the same for the
    same seed (Keras' validation_split would take the last images instead)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for digit in np.unique(labels):
        idx = np.flatnonzero(labels == digit)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def stratified_subset(labels, size, seed):
    """Sorted indices of `size` images with the class proportions kept."""
    if size >= len(labels):
        return np.arange(len(labels))
    return stratified_split(labels, size / len(labels), seed)[1]


def to_float(images):
    """uint8 digits to float32 in [0, 1] with a channel axis, as the model expects."""
    return images.astype("float32")[..., None] / 255.0


(x_all, y_all), (x_test, y_test) = load_mnist()
index = np.arange(len(y_all))
if TRAIN_IMAGES:
    index = stratified_subset(y_all, TRAIN_IMAGES, SPLIT_SEED)
keep, held = stratified_split(y_all[index], VALIDATION_SPLIT, SPLIT_SEED)
x_train, y_train = to_float(x_all[index[keep]]), y_all[index[keep]].astype("int32")
x_val, y_val = to_float(x_all[index[held]]), y_all[index[held]].astype("int32")
x_test, y_test = to_float(x_test), y_test.astype("int32")
print(f"{len(x_train):,} training, {len(x_val):,} validation, {len(x_test):,} test images")
'''

SCHEDULES = {
    "constant": '''\
def learning_rate_at(step, total_steps):
    """A constant rate."""
    return LEARNING_RATE
''',
    "step": '''\
def learning_rate_at(step, total_steps):
    """The rate divided by 10 at half of training and again at three quarters."""
    frac = step / max(total_steps, 1)
    return LEARNING_RATE * (0.01 if frac >= 0.75 else 0.1 if frac >= 0.5 else 1.0)
''',
    "one_cycle": '''\
def learning_rate_at(step, total_steps):
    """One cycle: a linear warm-up from LEARNING_RATE / 25 over the first quarter (large
    early steps would throw the random weights about), then cosine annealing down to
    LEARNING_RATE / 1000 so the last steps settle into a minimum."""
    frac = step / max(total_steps, 1)
    if frac < 0.25:
        return LEARNING_RATE / 25 + (LEARNING_RATE - LEARNING_RATE / 25) * frac / 0.25
    t = min((frac - 0.25) / 0.75, 1.0)
    low = LEARNING_RATE / 1000
    return low + (LEARNING_RATE - low) * 0.5 * (1 + math.cos(math.pi * t))
''',
}

STEP_CALLBACK = '''

class StepLearningRate(keras.callbacks.Callback):
    """Set the optimizer's rate before every batch (Keras' LearningRateScheduler only
    changes it once per epoch, too coarse for a run of a few epochs)."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = total_steps
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(
            learning_rate_at(self.step, self.total_steps))
        self.step += 1
'''

SMOOTHED_LOSS_CODE = '''

def smoothed_crossentropy(y_true, y_pred):
    """Cross-entropy against smoothed targets: 1 - LABEL_SMOOTHING * 9 / 10 on the true
    digit, LABEL_SMOOTHING / 10 on each other one, so the network is not pushed towards
    ever larger outputs. Layer Lab feeds Keras' CategoricalCrossentropy one-hot labels;
    this function takes the digits themselves, so evaluate() works on them too."""
    targets = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), "int32"), 10)
    return keras.losses.categorical_crossentropy(targets, y_pred,
                                                 label_smoothing=LABEL_SMOOTHING)
'''

TEACHER_CODE = '''\
# The teacher: Layer Lab's pretrained model of that preset (TEACHER_FILE, downloaded from
# the Models page). Its answers for the training images, softened by the temperature and
# blended with the true digits, are the targets this run learns from: a 4 the teacher
# finds 9-like is taught as partly a 9.
teacher = keras.models.load_model(TEACHER_FILE, compile=False)
answers = teacher.predict(x_train, batch_size=1000, verbose=0).astype("float64")
answers = np.clip(answers, 1e-12, 1.0) ** (1.0 / DISTILL_TEMPERATURE)
answers /= answers.sum(axis=1, keepdims=True)
targets = ((1 - DISTILL_WEIGHT) * np.eye(10)[y_train]
           + DISTILL_WEIGHT * answers).astype("float32")
'''

TAUGHT_LOSS_CODE = '''


def as_targets(y_true):
    """(N, 10) targets as they are; digits (validation, evaluate) made one-hot."""
    if len(y_true.shape) == 2 and y_true.shape[-1] == 10:
        return y_true
    return tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), "int32"), 10)


def taught_crossentropy(y_true, y_pred):
    """Cross-entropy against the blended targets while training, against the digits
    themselves when evaluate() is given digits (Layer Lab's categorical loss)."""
    return keras.losses.categorical_crossentropy(as_targets(y_true), y_pred{smoothing})


def accuracy(y_true, y_pred):
    """The share of images whose most likely digit is the target's."""
    return tf.cast(tf.equal(tf.argmax(as_targets(y_true), axis=-1),
                            tf.argmax(y_pred, axis=-1)), "float32")
'''

BATCH_NORM_CODE = '''\
def recalibrate_batch_norm(model, images, max_images=1024, batch_size=256, seed=0):
    """Set each BatchNormalization layer's moving mean and variance to the exact
    statistics of its input over a sample of training images, first layer first, in
    inference mode: the moving averages (momentum 0.99) still remember the random start
    after a short run, and the model would predict with the wrong statistics."""
    norms = [layer for layer in model.layers
             if isinstance(layer, layers.BatchNormalization) and layer.trainable]
    if len(images) > max_images:
        pick = np.random.default_rng(seed).choice(len(images), max_images, replace=False)
        images = images[np.sort(pick)]
    for layer in norms:
        probe = keras.Model(model.input, layer.input)
        count, total, squares = 0, 0.0, 0.0
        for start in range(0, len(images), batch_size):
            out = np.asarray(probe(images[start:start + batch_size], training=False))
            out = out.reshape(-1, out.shape[-1]).astype("float64")
            count += len(out)
            total = total + out.sum(axis=0)
            squares = squares + np.square(out).sum(axis=0)
        mean = total / count
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(
            np.maximum(squares / count - np.square(mean), 0.0).astype("float32"))


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """Refit the batch-norm statistics at every epoch end, as Layer Lab does, then
    measure the validation set with them (Keras' own validation would run before)."""

    def __init__(self, images, validation):
        super().__init__()
        self.images, self.validation = images, validation

    def on_epoch_end(self, epoch, logs=None):
        recalibrate_batch_norm(self.model, self.images)
        if logs is not None and self.validation is not None:
            loss, accuracy = self.model.evaluate(*self.validation, batch_size=512,
                                                 verbose=0)
            logs["val_loss"], logs["val_accuracy"] = loss, accuracy
'''

CURVES_CODE = """\
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
epochs = range(1, len(history.history["loss"]) + 1)
for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
    ax.plot(epochs, history.history[metric], "o-", label="training")
    if "val_" + metric in history.history:
        ax.plot(epochs, history.history["val_" + metric], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_title(metric)
    ax.legend()
plt.show()
"""

EVALUATION_CODE = """\
test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
print(f"Test accuracy: {test_accuracy:.4f} (loss {test_loss:.4f})")

# Rows are the true digits, columns the predictions: off-diagonal cells are the mistakes.
predicted = model.predict(x_test, batch_size=512, verbose=0).argmax(axis=1)
confusion = np.bincount(y_test * 10 + predicted, minlength=100).reshape(10, 10)
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(confusion, cmap="Blues")
for true in range(10):
    for guess in range(10):
        ax.text(guess, true, confusion[true, guess], ha="center", va="center", fontsize=8,
                color="white" if confusion[true, guess] > confusion.max() / 2 else "black")
ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true digit",
       title="Confusion matrix on the test set")
plt.show()
"""

OPTIMIZERS = {"adam": "keras.optimizers.Adam({rate})",
              "sgd": "keras.optimizers.SGD({rate}, momentum=0.9, nesterov=True)",
              "rmsprop": "keras.optimizers.RMSprop({rate})"}
