"""Run a SageMaker Pipeline definition on this machine, the way the service would.

The executor reads only the definition JSON and SageMaker's job contracts
(the ``/opt/ml`` layout, ``hyperparameters.json``, ``model.tar.gz``, the
failure file). It never imports the project's step code: the one project fact
it holds is how to run the project's image as a local process (``images.py``),
and that mapping is replaceable by a real container engine.

Modules: ``expressions`` (Get, Std:Join, Std:JsonGet, conditions), ``definition``
(parameters, steps, dependencies), ``rules`` (the service's request checks),
``storage`` (folder-backed or boto3 S3, and a read-only S3 endpoint for jobs),
``images`` (image -> command), ``jobs`` (processing and training jobs),
``tuning``, ``cache``, ``record`` (execution.json), ``engine`` (the scheduler),
``table`` (the live step table) and ``run`` (the command line).
"""
