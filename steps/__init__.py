"""Plain step functions: prepare, train, evaluate.

They take a config and folders and never know whether they run on a laptop or
inside a SageMaker job.
"""
