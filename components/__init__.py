"""KFP components, one per stage; each body imports skinlesion and calls one function."""

# The component runtime image (containers/pipeline/Dockerfile). `make compile IMAGE=...` swaps
# it for the ECR image in the compiled YAML; nothing here reads the environment.
PIPELINE_IMAGE = "skinlesion-pipeline:0.1.0"
