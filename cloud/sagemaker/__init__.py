"""Everything the project does on SageMaker, one module per job kind.

- session.py: the checks every job shares (role, region, bucket, instance type shape, S3 URIs), the SDK session and its
  dry run, tags, the Hub token.
- containers.py: container images and versions, GPU detection, the pinned code bundles jobs run.
- training.py: training jobs (train.run), their channels and status; tuning.py: hyperparameter tuning jobs.
- processing.py: the dataset build (data.build) as Processing jobs.
- model.py: model.tar.gz (weights + our handler) and the SageMaker model; endpoint.py: endpoints and the predictor;
  transform.py: batch transform jobs and collecting their answers.

``train.launch_sagemaker`` and ``inference.deploy`` are the command lines over these.
"""
