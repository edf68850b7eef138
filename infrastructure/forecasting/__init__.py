"""Forecasters in JAX: GARCH(1,1) (``garch``) and the baselines (``baselines``).

Pure numerical code: no HTTP, events or database. Each yields, per horizon step, a
:class:`~infrastructure.forecasting.distributions.ReturnDistribution` of the log return.
"""
