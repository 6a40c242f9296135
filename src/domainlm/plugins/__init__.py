"""Scenario plugins: capabilities an industry application calls as tools (``forecast``: price outlook), and
the registry of tools from entry points (group ``domainlm.plugins``) and OpenAPI files."""

from domainlm.plugins.exam import Exam, ExamConfig, exam_tool, make_exam, validate_exam
from domainlm.plugins.forecast import TOOL as FORECAST_TOOL
from domainlm.plugins.forecast import ForecastConfig, forecast, read_series
from domainlm.plugins.forecast import run_tool as run_forecast_tool
from domainlm.plugins.registry import Tool, ToolError, index_tools, load_tools

__all__ = ["Exam", "ExamConfig", "exam_tool", "make_exam", "validate_exam", "FORECAST_TOOL", "ForecastConfig", "Tool", "ToolError", "forecast", "index_tools", "load_tools", "read_series",
           "run_forecast_tool"]
