"""``s3l cluster``: MFCC / transformer-layer features, bounded-memory k-means, HuBERT unit label files.

Modules: ``features`` (extraction), ``store`` (memory-mapped shards on disk), ``kmeans`` (torch Lloyd engine and
the paper's scikit-learn configuration), ``labels`` (model file and label-set files), ``run`` (the stage).
"""

from s3l.cluster.run import ClusterConfig, run_cluster

__all__ = ["ClusterConfig", "run_cluster"]
