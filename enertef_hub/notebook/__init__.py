"""What runs inside a user's server: MLflow store defaults, MLflow UI and TensorBoard proxies.

Nothing here is imported by the hub. Modules import MLflow lazily, inside functions,
because MLflow loads our tracking-store entry point while it is itself importing.
"""
