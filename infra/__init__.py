"""Infrastructure as code: the CloudFormation stack the SageMaker side runs in.

``infra/template.yaml`` declares the buckets, KMS key, ECR repository, roles and
model package group; ``python -m infra.cli deploy`` deploys it and
``python -m infra.cli config`` writes its outputs into the Hydra config.
"""

from pathlib import Path

TEMPLATE_PATH = Path(__file__).resolve().with_name("template.yaml")

__all__ = ["TEMPLATE_PATH"]
