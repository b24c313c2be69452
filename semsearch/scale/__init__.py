"""Scaling out: building an index on a Ray cluster (``semsearch index --engine ray``).

- :mod:`.build`: :func:`build_with_ray`: embedding actors, Parquet shards, the store on the driver.
- :mod:`.corpus`: the corpus as a Ray Dataset; :mod:`.shards`: the vector index filled in parallel.
"""
