"""One module per resource a user gets: ``postgres`` (the MLflow store), ``minio``
(object storage) and ``seeding`` (notebook scripts in the home directory)."""
