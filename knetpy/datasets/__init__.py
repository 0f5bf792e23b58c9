"""Datasets: generators for the course toy problems, and loaders."""

from .toy import spirals
