"""Prompt templates for the language-model proposers, shipped with the package (see DESIGN.md section 4)."""
