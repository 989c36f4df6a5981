"""Banyan batch jobs on Ray: one task per `banyan batch --shard K/N`, retried and resumed, then merged."""

from .driver import run_job

__all__ = ["run_job"]
