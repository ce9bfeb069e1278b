"""Runners at the edge: in-process local runs and the SageMaker Pipeline builder."""
