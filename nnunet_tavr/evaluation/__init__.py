"""Comparing trainers across folds: metrics, statistics, tables and figures."""
