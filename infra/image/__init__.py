"""Build, push and try out the shared job image with podman, Docker or Finch.

    python -m infra.image base      [--name NAME] [--suite SUITE]
    python -m infra.image build     [--base IMAGE] [--ca-bundle FILE] [--platform P] [OVERRIDES...]
    python -m infra.image engine
    python -m infra.image name      [OVERRIDES...]
    python -m infra.image push      [--allow-dirty] [--record FILE] [OVERRIDES...]
    python -m infra.image run-local [--image IMAGE] [prepare|train|evaluate] [OVERRIDES...]

One module per concern: ``engine`` (which container CLI, its flags, running it),
``tag`` (the image's name after its source), ``config`` (the config's
``sagemaker`` section), ``base`` (the stand-in base), ``build`` (build and
push), ``registry`` (ECR, and keeping registered images from expiry),
``record`` (``conf/sagemaker/stack.yaml``), ``run_local`` (jobs in the image on
temporary /opt/ml trees) and ``cli``. OVERRIDES are Hydra overrides.

This tool runs on the host: it is not part of the image, and it imports no step.
"""

from infra.image.base import is_standin
from infra.image.build import BASE_LABEL, REVISION_LABEL
from infra.image.engine import Engine, ImageError, detect_engine, image_labels, run_command
from infra.image.tag import SourceTag, source_tag

__all__ = [
    "BASE_LABEL",
    "REVISION_LABEL",
    "Engine",
    "ImageError",
    "SourceTag",
    "detect_engine",
    "image_labels",
    "is_standin",
    "run_command",
    "source_tag",
]
