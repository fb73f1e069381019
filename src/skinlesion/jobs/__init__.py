"""The workloads, written against SageMaker's container contract: preprocess, train, evaluate, monitor."""
