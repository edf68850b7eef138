"""Forecasting in JAX: the forecasters and the engine behind ``application.ports.Forecaster``.

``garch`` (GARCH(1,1) maximum likelihood, batched), ``baselines`` (random walk, EWMA),
``distributions`` (location-scale t quantiles), ``mlp`` (a registry ``mlp_regressor``
served on the features its dataset was built with), ``conformal`` (weighted conformal
calibration of bands) and ``engine`` (``ForecastEngine``: rolling-origin forecasts of any
of them, each a function of the bars up to its cutoff). No HTTP, events or database.
"""
