output "sagemaker_execution_role_arn" {
  description = "ARN of the role SageMaker jobs and endpoints run as."
  value       = aws_iam_role.execution.arn
}

output "sagemaker_execution_role_name" {
  description = "Name of the SageMaker execution role."
  value       = aws_iam_role.execution.name
}

output "kubeflow_irsa_role_arn" {
  description = "ARN of the role the Kubeflow profile's service account assumes (eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.kubeflow.arn
}

output "kubeflow_irsa_role_name" {
  description = "Name of the Kubeflow IRSA role."
  value       = aws_iam_role.kubeflow.name
}
