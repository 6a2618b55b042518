"""Reviewer comments as first-class inputs: collected from every source, anchored in the
current text of the workspace, listed, resolved, and handed to the fix prompt.

Pure core: nothing here knows about LSP; positions are 1-based lines.
"""

from tracefix.reviews.address import changed_lines, touches
from tracefix.reviews.collect import ReviewSet, collect, comments_for_symbol
from tracefix.reviews.comment import CHANGE_TYPES, Comment, change_type, describe
from tracefix.reviews.github import export_items, github_comments
from tracefix.reviews.inline import Removal, inline_comments, removal_edit
from tracefix.reviews.jsonl import jsonl_comments

__all__ = [
    "CHANGE_TYPES",
    "Comment",
    "Removal",
    "ReviewSet",
    "change_type",
    "changed_lines",
    "collect",
    "comments_for_symbol",
    "describe",
    "export_items",
    "github_comments",
    "inline_comments",
    "jsonl_comments",
    "removal_edit",
    "touches",
]
