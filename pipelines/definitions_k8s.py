"""The code location for Kubernetes: the same definitions, run with `k8s_job_executor` (one pod per
step, so every shard partition's run fans out across the cluster). Needs `pip install '.[k8s]'`."""

from dagster_k8s import k8s_job_executor

from pipelines.definitions import build_definitions

defs = build_definitions(executor=k8s_job_executor)
