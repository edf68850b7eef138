"""The baseline of the training benchmark: a bare JAX loop, and a synthetic data set.

``bare_loop`` trains what ``infrastructure.jax_trainer.Trainer`` trains (the same MLP,
initialisation, loss, optimizer, schedule and batching: a shuffle from
``fold_in(PRNGKey(seed), epoch)``, fixed-shape batches, the last one padded with weight
0) but written on its own, with one jitted call per epoch (the shuffle and a
``lax.scan`` over every step) and nothing else: no metrics, no evaluation, no host
transfer until the end. Its time excludes compilation, which happens before the clock
starts, so it is the ideal a recorded run is compared against.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from domain.ml.hyperparameters import Hyperparameters
from infrastructure.jax_trainer import TrainingData


def synthetic_data(rows: int, features: int, seed: int) -> TrainingData:
    """A learnable binary problem: the sign of a linear score plus one interaction,
    with 5% of the labels flipped; the last 20% of the rows are the validation set."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    weights = rng.normal(size=features)
    score = x @ weights + (x[:, 0] * x[:, 1] if features > 1 else 0.0)
    y = score > 0
    y ^= rng.random(rows) < 0.05
    labels = y.astype(np.float32)
    cut = rows - max(1, rows // 5)
    return TrainingData(x[:cut], labels[:cut], x[cut:], labels[cut:])


def _init(seed: int, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 0), len(sizes) - 1)
    params = []
    for i, key in enumerate(keys):
        last = i == len(sizes) - 2
        init = jax.nn.initializers.glorot_normal() if last else jax.nn.initializers.he_normal()
        w = init(key, (sizes[i], sizes[i + 1]), jnp.float32)
        params.append((w, jnp.zeros((sizes[i + 1],), jnp.float32)))
    return params


def _optimizer(hp: Hyperparameters, total_steps: int) -> optax.GradientTransformation:
    lr: Any = hp.learning_rate
    if hp.lr_schedule == "cosine":
        lr = optax.cosine_decay_schedule(hp.learning_rate, max(total_steps, 1))
    if hp.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=hp.weight_decay)
    if hp.optimizer == "sgd":
        base = optax.sgd(lr, momentum=0.9)
    elif hp.optimizer == "rmsprop":
        base = optax.rmsprop(lr)
    else:
        base = optax.adam(lr)
    if hp.weight_decay:
        return optax.chain(optax.add_decayed_weights(hp.weight_decay), base)
    return base


def bare_loop(model_type: str, hp: Hyperparameters, data: TrainingData) -> tuple[int, float]:
    """(optimizer steps done, seconds) for ``hp.epochs`` epochs, compilation excluded."""
    n, features = data.x_train.shape
    batch = min(hp.batch_size, n)
    steps = math.ceil(n / batch)
    pad = steps * batch - n
    x64 = np.asarray(data.x_train, np.float64)
    std = x64.std(axis=0)
    mean32 = x64.mean(axis=0).astype(np.float32)
    std32 = np.where(std > 0, std, 1.0).astype(np.float32)
    x = jnp.asarray((data.x_train - mean32) / std32)
    y = jnp.asarray(data.y_train)
    mask = jnp.asarray((np.arange(steps * batch) < n).astype(np.float32).reshape(steps, batch))
    key = jax.random.PRNGKey(hp.seed)
    optimizer = _optimizer(hp, hp.epochs * steps)
    classifier = model_type == "mlp_classifier"

    def loss_fn(params: Any, xb: jax.Array, yb: jax.Array, wb: jax.Array) -> jax.Array:
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        out = (h @ params[-1][0] + params[-1][1])[:, 0]
        per_row = (
            optax.sigmoid_binary_cross_entropy(out, yb) if classifier else jnp.square(out - yb)
        )
        return jnp.sum(per_row * wb) / jnp.sum(wb)

    def epoch_fn(
        params: Any, opt_state: Any, x: jax.Array, y: jax.Array, mask: jax.Array,
        epoch: jax.Array,
    ) -> tuple[Any, Any]:  # fmt: skip
        def step(carry: Any, batch_rows: tuple[jax.Array, jax.Array]) -> tuple[Any, None]:
            params, opt_state = carry
            rows, wb = batch_rows
            grads = jax.grad(loss_fn)(params, x[rows], y[rows], wb)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        order = jnp.pad(perm, (0, pad)).reshape(steps, batch)
        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), (order, mask))
        return params, opt_state

    params = _init(hp.seed, [features] + [hp.hidden_units] * hp.layers + [1])
    opt_state = optimizer.init(params)
    compiled = jax.jit(epoch_fn).lower(params, opt_state, x, y, mask, jnp.int32(1)).compile()
    started = time.perf_counter()
    for epoch in range(1, hp.epochs + 1):
        params, opt_state = compiled(params, opt_state, x, y, mask, jnp.int32(epoch))
    params[-1][0].block_until_ready()  # each epoch depends on the one before
    return hp.epochs * steps, time.perf_counter() - started
