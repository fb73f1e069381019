"""KFP pipelines: the graphs, nothing else."""
