"""MLP training with JAX and optax: chunks of jitted steps, metric points, canonical export.

Model: ``layers`` hidden layers of ``hidden_units`` ReLU units and one linear output.
Hidden weights are He-normal, the output weights Glorot-normal, biases zero, drawn from
``fold_in(PRNGKey(seed), 0)`` (epochs, numbered from 1, take the keys after it).
Features are standardised with the training rows' mean and standard deviation (computed
in float64, kept in float32; a zero deviation counts as 1); the same numbers go into the
export, so a loaded model standardises alike.

Losses and accuracies, per row, averaged over a batch's real rows:

- ``mlp_classifier``: the target is 0 or 1 and the output a logit; the loss is sigmoid
  binary cross-entropy (``optax.sigmoid_binary_cross_entropy``), accuracy is
  ``(logit > 0) == y``.
- ``mlp_regressor``: the loss is the squared error; its "accuracy" is *directional*:
  ``sign(prediction) == sign(y)``, where 0 counts as positive on both sides.

Optimizers (optax): ``adam``, ``adamw`` (optax's decoupled weight decay), ``sgd`` with
momentum 0.9 and ``rmsprop``. For those three a nonzero ``weight_decay`` chains
``optax.add_decayed_weights`` before them: an L2 penalty applied to the gradient and
left out of the reported loss (so ``adam`` with decay is PyTorch's Adam with
``weight_decay``, and ``adamw`` stays the decoupled variant). Decay applies to every
parameter, biases included. The learning rate is constant or follows a cosine decay to
0 over the run's ``epochs * steps_per_epoch`` steps.

Batching: ``batch_size`` rows a step (all the training rows when there are fewer), so
``steps_per_epoch = ceil(n_train / batch_size)``. Epoch ``e`` visits the rows in the
order ``permutation(fold_in(PRNGKey(seed), e))``; the last batch is padded to the full
shape with rows of weight 0, so every row counts exactly once an epoch and each step
has one shape. Steps run in chunks, each chunk one jitted ``lax.scan`` over its steps;
a compiled chunk is kept per distinct length and reused across epochs.

Metric points: with ``every_steps`` a point follows each global step that is a multiple
of it (steps 3, 6, 9, ... of the run, whatever the epoch), and a point always closes an
epoch. A point's loss and accuracy are the mean of the per-step values since the
previous point (steps weigh alike, whatever their real rows), its validation metrics are
over the whole validation set with the current parameters, its learning rate the one
the last step used, and ``duration_ms`` the time the trainer spent since the previous
point (steps, evaluation and, on a first use, compilation; not the time the caller
held the iterator).

Determinism: the order of an epoch depends on (seed, epoch) only and each step is the
same computation whatever chunk it runs in, so the same data, model type and
hyperparameters give bit-identical points (but ``duration_ms``) and export bytes on the
same machine and JAX version, and the parameters at an epoch's end do not depend on
``every_steps`` or ``chunk_steps``.

Export (``export``/``load_model``): ``MAGIC``, the header's length as a little-endian
uint32, the header as msgspec JSON (``format``, ``model_type``, ``layer_sizes`` from the
inputs to the output, ``activation``, and ``arrays``: name and shape of each array in
the order they follow), then the arrays as little-endian float32 in C order:
``feature_mean``, ``feature_std``, then ``w0``, ``b0``, ``w1``, ``b1``, ... (``w`` of
shape inputs x outputs). The same parameters give the same bytes.
"""

from __future__ import annotations

import functools
import math
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import msgspec
import numpy as np
import optax

from application.ports import MetricPoint, TrainingData
from domain.ml.hyperparameters import MODEL_TYPES, Hyperparameters

__all__ = ["MetricPoint", "Trainer", "TrainingData", "load_model"]

MAGIC = b"AIMM-MLP"
FORMAT = "aimm.mlp/1"
CLASSIFIER = "mlp_classifier"

Params = Any  # list of (w, b) pairs of jax arrays, one pair per layer
_Arrays = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
ChunkFn = Callable[..., tuple[Any, Any, jax.Array]]


class _ArraySpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    shape: list[int]


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    model_type: str
    layer_sizes: list[int]
    activation: str
    arrays: list[_ArraySpec]


_header_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(_Header)


def _forward(params: Params, x: jax.Array) -> jax.Array:
    """Raw outputs (n,) of standardised inputs (n, f)."""
    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    return (h @ w + b)[:, 0]


@jax.jit
def _predict(params: Params, mean: jax.Array, std: jax.Array, x: jax.Array) -> jax.Array:
    return _forward(params, (x - mean) / std)


def _per_row(model_type: str, out: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Loss and correctness (1.0 or 0.0) of each row."""
    if model_type == CLASSIFIER:
        loss = optax.sigmoid_binary_cross_entropy(out, y)
        correct = (out > 0).astype(jnp.float32) == y
    else:
        loss = jnp.square(out - y)
        correct = (out >= 0) == (y >= 0)
    return loss, correct.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("rows", "batch_size"))
def _epoch_order(key: jax.Array, epoch: jax.Array, *, rows: int, batch_size: int) -> jax.Array:
    """Row indices (steps, batch_size) of an epoch; the padding points at row 0."""
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), rows)
    return jnp.pad(perm, (0, -rows % batch_size)).reshape(-1, batch_size)


@functools.partial(jax.jit, static_argnames=("model_type",))
def _evaluate(
    params: Params, x: jax.Array, y: jax.Array, *, model_type: str
) -> tuple[jax.Array, jax.Array]:
    """Mean loss and accuracy over a whole set."""
    loss, correct = _per_row(model_type, _forward(params, x), y)
    return jnp.mean(loss), jnp.mean(correct)


def _init_params(key: jax.Array, sizes: list[int]) -> Params:
    hidden = jax.nn.initializers.he_normal()
    output = jax.nn.initializers.glorot_normal()
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        init = output if i == len(sizes) - 2 else hidden
        w = init(k, (fan_in, fan_out), jnp.float32)
        params.append((w, jnp.zeros((fan_out,), jnp.float32)))
    return params


def _schedule(hp: Hyperparameters, total_steps: int) -> optax.Schedule:
    if hp.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(hp.learning_rate, max(total_steps, 1))
    return optax.constant_schedule(hp.learning_rate)


def _optimizer(hp: Hyperparameters, schedule: optax.Schedule) -> optax.GradientTransformation:
    if hp.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=hp.weight_decay)
    base = {
        "adam": lambda: optax.adam(schedule),
        "sgd": lambda: optax.sgd(schedule, momentum=0.9),
        "rmsprop": lambda: optax.rmsprop(schedule),
    }[hp.optimizer]()
    if hp.weight_decay:
        return optax.chain(optax.add_decayed_weights(hp.weight_decay), base)
    return base


class Trainer:
    """One training run's model, optimizer state and data, trained an epoch at a time."""

    def __init__(self, model_type: str, hp: Hyperparameters, data: TrainingData) -> None:
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}")
        n_train, n_features = data.x_train.shape
        if n_train == 0 or len(data.x_val) == 0:
            raise ValueError("training and validation sets must both have rows")
        self.model_type = model_type
        self.hp = hp
        self.batch_size = min(hp.batch_size, n_train)
        self.steps_per_epoch = math.ceil(n_train / self.batch_size)
        self._n_train = n_train
        self._sizes = [n_features] + [hp.hidden_units] * hp.layers + [1]

        x_train = np.asarray(data.x_train, np.float64)
        self._mean = x_train.mean(axis=0).astype(np.float32)
        std = x_train.std(axis=0)
        self._std = np.where(std > 0, std, 1.0).astype(np.float32)
        self._x = jnp.asarray(self._standardise(data.x_train))
        self._y = jnp.asarray(data.y_train, jnp.float32)
        self._x_val = jnp.asarray(self._standardise(data.x_val))
        self._y_val = jnp.asarray(data.y_val, jnp.float32)
        padded = self.steps_per_epoch * self.batch_size
        self._mask = jnp.asarray(
            (np.arange(padded) < n_train).astype(np.float32).reshape(-1, self.batch_size)
        )

        self._key = jax.random.PRNGKey(hp.seed)
        self._schedule = _schedule(hp, hp.epochs * self.steps_per_epoch)
        self._optimizer = _optimizer(hp, self._schedule)
        self._params: Params = _init_params(jax.random.fold_in(self._key, 0), self._sizes)
        self._opt_state = self._optimizer.init(self._params)
        self._step = 0
        # compiled per distinct chunk length; the order and evaluation, which do not
        # depend on the optimizer, are compiled once per shape for every trainer
        self._chunks: dict[tuple[int, bool], ChunkFn] = {}

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) - self._mean) / self._std

    def _train_step(
        self, carry: tuple[Params, Any], batch: tuple[jax.Array, jax.Array],
        x: jax.Array, y: jax.Array,
    ) -> tuple[tuple[Params, Any], tuple[jax.Array, jax.Array]]:  # fmt: skip
        params, opt_state = carry
        rows, weight = batch
        xb, yb = x[rows], y[rows]

        def loss_fn(p: Params) -> tuple[jax.Array, jax.Array]:
            loss, correct = _per_row(self.model_type, _forward(p, xb), yb)
            total = jnp.sum(weight)
            return jnp.sum(loss * weight) / total, jnp.sum(correct * weight) / total

        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self._optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

    def _run_chunk(  # noqa: PLR0913
        self,
        params: Params,
        opt_state: Any,
        data: _Arrays,
        start: jax.Array,
        *,
        length: int,
        evaluate: bool,
    ) -> tuple[Params, Any, jax.Array]:
        """``length`` steps from step ``start`` of the epoch; data is (x, y, order, mask).

        Returns the new state and one small vector of statistics — the sums of the
        steps' losses and accuracies, then (when ``evaluate``) the validation loss and
        accuracy with the new parameters — so a chunk costs one host transfer."""
        x, y, order, mask = data
        rows = jax.lax.dynamic_slice_in_dim(order, start, length)
        weights = jax.lax.dynamic_slice_in_dim(mask, start, length)
        step = functools.partial(self._train_step, x=x, y=y)
        (params, opt_state), (losses, accuracies) = jax.lax.scan(
            step, (params, opt_state), (rows, weights)
        )
        sums = [jnp.sum(losses), jnp.sum(accuracies)]
        if evaluate:
            sums.extend(_evaluate(params, self._x_val, self._y_val, model_type=self.model_type))
        return params, opt_state, jnp.stack(sums)

    def _chunk(self, length: int, evaluate: bool) -> ChunkFn:
        if (length, evaluate) not in self._chunks:
            self._chunks[length, evaluate] = jax.jit(
                functools.partial(self._run_chunk, length=length, evaluate=evaluate)
            )
        return self._chunks[length, evaluate]

    def run_epoch(
        self, epoch: int, every_steps: int | None = None, chunk_steps: int = 256
    ) -> Iterator[MetricPoint | None]:
        """Train epoch ``epoch`` (1-based): a point at each due step and at the end, else
        None after each chunk of at most ``chunk_steps`` steps. Stopping at any yield
        leaves the parameters of the steps done."""
        if epoch < 1:
            raise ValueError("epochs are numbered from 1")
        if every_steps is not None and every_steps < 1:
            raise ValueError("every_steps must be at least 1")
        if chunk_steps < 1:
            raise ValueError("chunk_steps must be at least 1")
        spent = 0.0
        started = time.perf_counter()
        order = _epoch_order(self._key, epoch, rows=self._n_train, batch_size=self.batch_size)
        loss_sum = accuracy_sum = 0.0
        steps = done = 0
        while done < self.steps_per_epoch:
            until = self.steps_per_epoch
            if every_steps is not None:
                until = min(until, done + every_steps - self._step % every_steps)
            length = min(chunk_steps, until - done)
            end = done + length == self.steps_per_epoch
            due = end or (every_steps is not None and (self._step + length) % every_steps == 0)
            self._params, self._opt_state, stats = self._chunk(length, due)(
                self._params, self._opt_state, (self._x, self._y, order, self._mask), done
            )
            values = np.asarray(stats, np.float64)  # waits for the chunk
            loss_sum += values[0]
            accuracy_sum += values[1]
            steps += length
            done += length
            self._step += length
            item: MetricPoint | None = None
            if due:
                item = MetricPoint(
                    epoch=epoch,
                    step=self._step,
                    end_of_epoch=end,
                    loss=loss_sum / steps,
                    accuracy=accuracy_sum / steps,
                    val_loss=float(values[2]),
                    val_accuracy=float(values[3]),
                    learning_rate=self._learning_rate(self._step - 1),
                    duration_ms=0.0,
                )
                loss_sum = accuracy_sum = 0.0
                steps = 0
            spent += time.perf_counter() - started
            if item is not None:
                item = replace(item, duration_ms=spent * 1000.0)
                spent = 0.0
            yield item
            started = time.perf_counter()

    def _learning_rate(self, step: int) -> float:
        """The schedule's rate at ``step``, computed once per step number and kept."""
        if self.hp.lr_schedule == "constant":
            return float(self.hp.learning_rate)
        return float(self._schedule(step))

    def params_snapshot(self) -> Any:
        """A host copy of the current parameters, for ``restore``."""
        return [(np.array(w, copy=True), np.array(b, copy=True)) for w, b in self._params]

    def restore(self, snapshot: Any) -> None:
        """Put back a snapshot's parameters (the optimizer state stays as it is)."""
        self._params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in snapshot]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs for unstandardised rows: logits for the classifier."""
        out = _predict(self._params, self._mean, self._std, jnp.asarray(x, jnp.float32))
        return np.asarray(out)

    def export(self) -> bytes:
        arrays: list[tuple[str, np.ndarray]] = [
            ("feature_mean", self._mean),
            ("feature_std", self._std),
        ]
        for i, (w, b) in enumerate(self._params):
            arrays += [(f"w{i}", np.asarray(w)), (f"b{i}", np.asarray(b))]
        header = _Header(
            format=FORMAT,
            model_type=self.model_type,
            layer_sizes=self._sizes,
            activation="relu",
            arrays=[_ArraySpec(name, list(a.shape)) for name, a in arrays],
        )
        head = _header_encoder.encode(header)
        body = b"".join(np.ascontiguousarray(a, "<f4").tobytes() for _, a in arrays)
        return MAGIC + struct.pack("<I", len(head)) + head + body


def load_model(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """The predict function (raw outputs of unstandardised rows) of ``export`` bytes."""
    if data[: len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + 4:
        raise ValueError("not an exported aimm MLP")
    offset = len(MAGIC) + 4
    (head_length,) = struct.unpack("<I", data[len(MAGIC) : offset])
    try:
        header = _header_decoder.decode(data[offset : offset + head_length])
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable model header: {exc}") from None
    if header.format != FORMAT:
        raise ValueError(f"unsupported model format {header.format!r}")
    layers = len(header.layer_sizes) - 1
    names = ["feature_mean", "feature_std"]
    names += [f"{kind}{i}" for i in range(layers) for kind in ("w", "b")]
    if [spec.name for spec in header.arrays] != names:
        raise ValueError("the model's arrays do not match its layers")
    offset += head_length
    arrays: dict[str, np.ndarray] = {}
    for spec in header.arrays:
        count = math.prod(spec.shape)
        flat = np.frombuffer(data, "<f4", count, offset)
        arrays[spec.name] = flat.astype(np.float32).reshape(spec.shape)
        offset += 4 * count
    if offset != len(data):
        raise ValueError("exported model has trailing bytes")
    params = [(jnp.asarray(arrays[f"w{i}"]), jnp.asarray(arrays[f"b{i}"])) for i in range(layers)]
    mean, std = jnp.asarray(arrays["feature_mean"]), jnp.asarray(arrays["feature_std"])

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(_predict(params, mean, std, jnp.asarray(x, jnp.float32)))

    return predict
