output "repository_urls" {
  description = "Image repository URLs by role (training, inference, pipeline)."
  value       = { for role, repo in aws_ecr_repository.this : role => repo.repository_url }
}

output "repository_arns" {
  description = "Image repository ARNs by role (training, inference, pipeline)."
  value       = { for role, repo in aws_ecr_repository.this : role => repo.arn }
}

output "model_package_group_name" {
  description = "Name of the SageMaker model package group (the model registry)."
  value       = "${var.name_prefix}-classifier"
}

output "model_package_group_arn" {
  description = "ARN of the SageMaker model package group; null when enable_model_package_group is false."
  value       = one(aws_sagemaker_model_package_group.this[*].arn)
}
