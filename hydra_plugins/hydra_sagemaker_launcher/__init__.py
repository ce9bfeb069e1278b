"""Hydra launcher plugin: each job of a multirun as one SageMaker training job."""
