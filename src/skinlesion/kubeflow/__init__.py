"""Kubeflow Pipelines: compile and strictly validate the pipelines, submit runs, manage schedules.

Modules: ``tasks`` (task settings the pipelines apply), ``discovery`` (which pipelines exist),
``compiling`` and ``validation`` (IR YAML), ``params`` and ``settings`` (per-environment
arguments and connection settings), ``auth`` and ``secrets`` (credentials, masked in logs),
``client`` (the KFP API), ``submit``, ``schedules``, ``status`` (the exit handler's record) and
``commands`` (the ``skinlesion kubeflow`` CLI). Importing this package does no work.
"""
