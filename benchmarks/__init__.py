"""The scorers (stand-alone: never imports llava_cit). Importing the package registers every metric by name
(benchmarks.metrics, and the task sequences' in benchmarks.sequence_metrics)."""

import benchmarks.sequence_metrics  # noqa: F401  (registers UCIT's, MLLM-DCL's and CoIN's metrics beside metrics.py's)
