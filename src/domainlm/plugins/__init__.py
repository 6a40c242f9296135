"""Scenario plugins: capabilities an industry application calls as tools (``forecast``: price outlook), and
the registry of tools from entry points (group ``domainlm.plugins``) and OpenAPI files."""

from domainlm.plugins.exam import (
                                   Exam,
                                   ExamConfig,
                                   ExamItem,
                                   ItemFix,
                                   ItemType,
                                   exam_tool,
                                   item_answer,
                                   item_prompt,
                                   make_exam,
                                   review_problems,
                                   revise_item,
                                   validate_exam,
)
from domainlm.plugins.exam import to_docx as exam_docx
from domainlm.plugins.exam import to_markdown as exam_markdown
from domainlm.plugins.forecast import TOOL as FORECAST_TOOL
from domainlm.plugins.forecast import ForecastConfig, forecast, read_series
from domainlm.plugins.forecast import run_tool as run_forecast_tool
from domainlm.plugins.registry import Tool, ToolError, index_tools, load_tools

__all__ = ["Exam", "ExamConfig", "ExamItem", "ItemFix", "ItemType", "exam_docx", "exam_markdown", "item_answer", "item_prompt",
           "review_problems", "revise_item", "exam_tool", "make_exam", "validate_exam", "FORECAST_TOOL", "ForecastConfig", "Tool", "ToolError", "forecast", "index_tools", "load_tools", "read_series",
           "run_forecast_tool"]
