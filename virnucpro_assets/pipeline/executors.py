"""How a run executes its steps, chosen by `VIRNUCPRO_EXECUTOR` (virnucpro_assets.settings):

- `in_process` (default): every step in the run's own process, on this machine (sqlite or Postgres).
- `celery`: each step is a Celery task (dagster-celery) on a Redis broker. GPU steps go to the queue
  `gpu`, where each worker is pinned to one device and takes one task at a time; every other step
  (CPU steps, checks) goes to the queue `cpu`. Workers on any host take them:
  `virnucpro-assets worker` (virnucpro_assets.deployment.workers). Needs the Postgres instance
  (virnucpro_assets/instance/postgres.yaml) and a store every host reaches.
- `k8s`: each step is a Kubernetes Job (dagster-k8s `k8s_job_executor`); GPU steps ask for one
  `nvidia.com/gpu` on a GPU node through their `dagster-k8s/config` tag. Described, never run here.

The GPU pool (dagster.yaml) bounds GPU steps in flight whatever the executor: with Celery its limit
should be the number of GPU workers of all hosts (`virnucpro-assets init --gpu-slots N`).
"""

from __future__ import annotations

import dagster as dg

from virnucpro_assets.settings import Settings

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
# The node label GPU steps are scheduled on under Kubernetes (NVIDIA's GPU feature discovery sets it).
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}

# Op tags of every GPU step: its Celery queue, and its pod's GPU under Kubernetes.
GPU_STEP_TAGS = {
    "dagster-celery/queue": GPU_QUEUE,
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR},
    },
}


def celery_config(settings: Settings) -> dict:
    """The celery executor's config, which the workers must share (`dagster-celery worker start -y`).

    Broker outages: submitting a step retries for up to `PUBLISH_RETRY_S`, and the run's wait for
    a step's result retries reading the backend until it is back, so runs wait out a broker restart
    instead of failing; Redis must keep its data across the restart (appendonly) for queued steps and
    results to survive it."""
    return {
        "broker": settings.celery_broker,
        "backend": settings.celery_backend or settings.celery_broker,
        "config_source": {
            "task_default_queue": CPU_QUEUE,
            # A step is acknowledged when it ends, and a worker process that dies in it (kill -9, out
            # of memory) hands it back to the queue: another worker of the queue runs it again, in
            # the same run. (Acknowledged at its start, the lost step would leave dagster-celery
            # 0.29's run waiting for good on the steps after it: its loop submits nothing once a
            # task failed, and waits for those.) A host lost whole gets its steps redelivered once
            # the broker's visibility timeout has passed: long enough for the longest GPU step.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "broker_transport_options": {
                "visibility_timeout": VISIBILITY_TIMEOUT_S,
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.5,
            },
            "worker_prefetch_multiplier": 1,
            "task_publish_retry_policy": {"max_retries": PUBLISH_RETRIES, "interval_start": 0, "interval_step": 1, "interval_max": 2},
            "broker_connection_retry_on_startup": True,
            "broker_connection_max_retries": None,
            "result_backend_always_retry": True,
            "result_backend_max_retries": BACKEND_RETRIES,
            "result_backend_max_sleep_between_retries_ms": 2000,
            "redis_backend_health_check_interval": 5,
        },
    }


VISIBILITY_TIMEOUT_S = 24 * 3600
PUBLISH_RETRIES = 300  # about 10 minutes of broker outage while submitting a step
PUBLISH_RETRY_S = 2 * PUBLISH_RETRIES
BACKEND_RETRIES = 300  # about 10 minutes of broker outage while waiting for a step


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(settings), name="celery")
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
