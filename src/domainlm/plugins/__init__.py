"""Scenario plugins: capabilities an industry application calls as tools (``forecast``: price outlook)."""

from domainlm.plugins.forecast import TOOL as FORECAST_TOOL
from domainlm.plugins.forecast import ForecastConfig, forecast, read_series
from domainlm.plugins.forecast import run_tool as run_forecast_tool

__all__ = ["FORECAST_TOOL", "ForecastConfig", "forecast", "read_series", "run_forecast_tool"]
