"""KFP components, one per stage; each body imports skinlesion and calls one function."""

# The component runtime image (containers/pipeline/Dockerfile). `make compile` swaps it for the
# commit's image set (skinlesion.kubeflow.images: Terraform's ECR outputs or IMAGE_REGISTRY) in
# the compiled YAML; kfp.local runs the bodies in-process and pulls nothing. Nothing here reads
# the environment.
PIPELINE_IMAGE = "skinlesion-pipeline:0.1.0"
